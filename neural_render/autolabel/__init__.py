"""G-buffers for videos with an inverse rendering pipeline: one video (``neural-render inverse``, :mod:`.video`) or
every video of a folder, sharded over processes and resumable (``neural-render autolabel``: :mod:`.inputs` finds
and shards the inputs, :mod:`.state` keeps the per-clip status, spec and manifest, :mod:`.predict` runs Lightning
predict over them). Import the submodules directly (Lightning and torch load only with them)."""
