"""Choose the Mitsuba 3 variant: ``llvm_ad_rgb`` when a probe proved it works here, else ``scalar_rgb``.

Dr.Jit loads whatever libLLVM it finds (or ``DRJIT_LIBLLVM_PATH``); with an LLVM it cannot drive (Mitsuba 3.9 /
Dr.Jit 1.5 with Debian's libLLVM 15: ``LLVM ERROR: Cannot select: fminimum``) the JIT aborts the WHOLE process at
the first render, so ``mi.set_variant`` succeeding proves nothing. An ``llvm_*`` variant is therefore only used
after :func:`probe_variant` rendered a tiny scene with it (env map emitter, meshes, principled BSDF, path and AOV
integrators, ray casts) in a SUBPROCESS (``python -m neural_render.render.mitsuba_variant --probe VARIANT``;
success = exit 0 and an ``ok`` line). The result is cached as JSON in ``$NEURAL_RENDER_CACHE_DIR`` or else
``${XDG_CACHE_HOME:-~/.cache}/neural_render/mitsuba_variant.json``, keyed by the mitsuba and drjit versions,
``sys.executable``, ``DRJIT_LIBLLVM_PATH`` and the libLLVM files in the usual library folders (path, size,
mtime): installing libllvm19 later re-probes. An unwritable cache dir only means no caching (logged).

``NEURAL_RENDER_MITSUBA_VARIANT`` overrides the choice: that variant or an error, never another one. It is set
without a probe, except an ``llvm_*`` override: it still goes through the (cached) probe and is refused with a
:class:`NeuralRenderError` where it would abort the process (tests that force it then skip instead of crash).
:func:`mitsuba_status` (``neural-render info``) reports the variant and why it is not ``llvm_ad_rgb``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from neural_render.errors import NeuralRenderError

PREFERRED_VARIANTS = ("llvm_ad_rgb", "scalar_rgb")
ENV_OVERRIDE = "NEURAL_RENDER_MITSUBA_VARIANT"
CACHE_ENV = "NEURAL_RENDER_CACHE_DIR"
LLVM_PATH_ENV = "DRJIT_LIBLLVM_PATH"
PROBE_TIMEOUT_S = 120.0
CACHE_NAME = "mitsuba_variant.json"
MAX_CACHE_ENTRIES = 16
_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib/*-linux-gnu", "/usr/lib/*-linux-gnu",
             "/usr/lib/llvm-*/lib", "/opt/homebrew/opt/llvm/lib", "/usr/local/opt/llvm/lib")

log = logging.getLogger(__name__)
_MEMO: dict[str, tuple[bool, str]] = {}  # key digest -> (probe ok, detail), this process


def cache_file() -> Path:
    """Where probe results are cached (see module doc)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "neural_render")
    return Path(root) / CACHE_NAME


def llvm_libraries() -> list[list]:
    """[realpath, size, mtime_ns] of every libLLVM the loader could find (usual folders, LD_LIBRARY_PATH,
    ``DRJIT_LIBLLVM_PATH``), sorted."""
    dirs = [d for env in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH") for d in os.environ.get(env, "").split(":") if d]
    files = {p for d in (*dirs, *_LIB_DIRS) for pat in ("libLLVM*.so*", "libLLVM*.dylib")
             for p in glob.glob(os.path.join(d, pat))}
    if os.environ.get(LLVM_PATH_ENV):
        files.add(os.environ[LLVM_PATH_ENV])
    out = {}
    for path in files:
        with contextlib.suppress(OSError):
            real = os.path.realpath(path)
            st = os.stat(real)
            out[real] = [real, st.st_size, st.st_mtime_ns]
    return sorted(out.values())


def probe_key(variant: str) -> dict:
    """Everything a probe result depends on (module doc); its digest keys the cache."""
    import drjit
    import mitsuba

    return {"variant": variant, "mitsuba": mitsuba.__version__, "drjit": drjit.__version__,
            "python": sys.executable, LLVM_PATH_ENV: os.environ.get(LLVM_PATH_ENV), "libllvm": llvm_libraries()}


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict:
    """{"entries": {digest: record}} with only well-formed records; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        entries = data["entries"] if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {}
    except (OSError, ValueError):
        entries = {}
    return {"entries": {k: v for k, v in entries.items() if isinstance(v, dict) and {"ok", "detail"} <= set(v)}}


def _write_cache(path: Path, digest: str, record: dict) -> None:
    """Add ``record`` under ``digest`` (atomic rewrite, oldest entries dropped); an unwritable dir is logged."""
    from neural_render.io.atomic import atomic_path

    data = _read_cache(path)
    data["entries"][digest] = record
    data["entries"] = dict(list(data["entries"].items())[-MAX_CACHE_ENTRIES:])
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1))
    except OSError as err:
        log.warning("cannot cache the Mitsuba variant probe in %s (%s); set %s to a writable folder",
                    path, err, CACHE_ENV)


@contextlib.contextmanager
def _probe_lock(path: Path):
    """Exclusive lock beside the cache (POSIX) so concurrent processes probe once; no lock when impossible."""
    try:
        import fcntl
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _failure_detail(proc: subprocess.CompletedProcess) -> str:
    """One line saying why a probe failed: the LLVM error, else the last exception line, plus the signal."""
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    llvm = [ln for ln in lines if ln.startswith("LLVM ERROR")]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)]
    message = llvm[0] if llvm else errors[-1] if errors else lines[-1] if lines else "no output"
    message = re.sub(r"\s*0x[0-9a-fA-F]+:?,?", "", message)[:300]
    if proc.returncode < 0:
        with contextlib.suppress(ValueError):
            message += f" ({signal.Signals(-proc.returncode).name})"
    elif proc.returncode:
        message += f" (exit code {proc.returncode})"
    loaded = [ln.split(None, 1)[1] for ln in (proc.stdout or "").splitlines() if ln.startswith("llvm ")]
    return message + (f" with {loaded[0]}" if loaded else "")


def probe_variant(variant: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Run the probe of ``variant`` in a subprocess -> (ok, detail); never risks this process."""
    cmd = [sys.executable, "-m", "neural_render.render.mitsuba_variant", "--probe", variant]
    log.info("probing Mitsuba variant %s in a subprocess", variant)
    start = time.perf_counter()
    env = dict(os.environ)  # the child imports this very package, installed or not
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                    env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g} s"
    ok = proc.returncode == 0 and "ok" in (ln.strip() for ln in proc.stdout.splitlines())
    loaded = [ln[5:] for ln in proc.stdout.splitlines() if ln.startswith("llvm ")]
    detail = (f"works with {loaded[0] if loaded else 'its libLLVM'}" if ok else _failure_detail(proc))
    log.info("Mitsuba %s probe: %s (%.1f s)", variant, detail, time.perf_counter() - start)
    return ok, detail


def probe_result(variant: str) -> tuple[bool, str]:
    """(ok, detail) of ``variant`` here: from this process's memo, the cache, or a fresh probe (then cached)."""
    key = probe_key(variant)
    digest = _digest(key)
    if digest in _MEMO:
        return _MEMO[digest]
    path = cache_file()
    entry = _read_cache(path)["entries"].get(digest)
    if entry is None:
        with _probe_lock(path):
            entry = _read_cache(path)["entries"].get(digest)  # another process may have probed meanwhile
            if entry is None:
                start = time.time()
                ok, detail = probe_variant(variant)
                entry = {"ok": ok, "detail": detail, "key": key, "probe_seconds": round(time.time() - start, 2),
                         "probed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                if not detail.startswith("timed out"):  # a busy machine is no verdict on LLVM
                    _write_cache(path, digest, entry)
    _MEMO[digest] = (bool(entry["ok"]), str(entry["detail"]))
    return _MEMO[digest]


def _choose(preferred: tuple[str, ...]):
    """Set the variant -> (mitsuba module, note on why earlier candidates were skipped or '')."""
    try:
        import mitsuba as mi
    except ImportError as err:
        raise NeuralRenderError(f"mitsuba is not installed ({err}); pip install mitsuba") from err
    forced = os.environ.get(ENV_OVERRIDE)
    skipped = []
    for name in (forced,) if forced else preferred:
        if name.startswith("llvm_"):
            ok, detail = probe_result(name)
            if not ok:
                skipped.append(f"{name} probe failed: {detail}")
                continue
        try:
            mi.set_variant(name)
            return mi, "; ".join(skipped)
        except Exception as err:  # unknown or uncompiled variant, missing LLVM: ImportError/AttributeError/...
            skipped.append(f"{name}: {err}")
    where = f" ({ENV_OVERRIDE}={forced})" if forced else ""
    raise NeuralRenderError(f"no usable Mitsuba variant{where}: " + "; ".join(skipped))


def select_mitsuba_variant(preferred: tuple[str, ...] = PREFERRED_VARIANTS):
    """Set and return the first usable variant (module doc); returns the ``mitsuba`` module ready to use."""
    return _choose(preferred)[0]


def mitsuba_status() -> str:
    """Variant report, e.g. 'llvm_ad_rgb' or 'scalar_rgb (llvm_ad_rgb probe failed: LLVM ERROR: ...)'."""
    try:
        mi, note = _choose(PREFERRED_VARIANTS)
    except NeuralRenderError as err:
        return f"unusable ({err.reason})"
    variant = mi.variant()
    if os.environ.get(ENV_OVERRIDE):
        return f"{variant} (set by {ENV_OVERRIDE})"
    if variant != PREFERRED_VARIANTS[0]:
        return (f"{variant} ({note or PREFERRED_VARIANTS[0] + ' unusable'}; install libLLVM 19 (Debian: "
                f"libllvm19) or point {LLVM_PATH_ENV} at it for speed)")
    return variant


def _loaded_llvm() -> str:
    """The libLLVM this process mapped (Linux) and its version, for the probe's report."""
    import drjit as dr

    path = os.environ.get(LLVM_PATH_ENV) or "libLLVM"
    with contextlib.suppress(OSError):
        maps = [ln.split()[-1] for ln in Path("/proc/self/maps").read_text().splitlines() if "libLLVM" in ln]
        path = maps[0] if maps else path
    with contextlib.suppress(Exception):
        path += " (LLVM " + ".".join(map(str, dr.detail.llvm_version())) + ")"
    return path


def _probe(variant: str) -> None:
    """Child side of :func:`probe_variant`: what the project renders, tiny (may abort the process)."""
    import drjit as dr
    import mitsuba as mi
    import numpy as np

    mi.set_variant(variant)
    # stdout is this child's answer to probe_variant (the parent reads these lines), not a diagnostic
    print("llvm", _loaded_llvm(), flush=True)
    ramp = np.linspace(0.05, 1.0, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)

    def bitmap(a):
        return {"type": "bitmap", "bitmap": mi.Bitmap(a), "filter_type": "bilinear", "wrap_mode": "repeat",
                "raw": True}

    bsdf = {"type": "twosided", "bsdf": {"type": "principled", "base_color": bitmap(ramp),
                                         "roughness": bitmap(ramp[..., :1].copy()), "metallic": 0.3}}
    mesh = mi.Mesh("mesh_0000", 3, 1, has_vertex_normals=True, has_vertex_texcoords=True)
    params = mi.traverse(mesh)
    for name, array in (("vertex_positions", [-2, -1, 0, 2, -1, 0, 0, 2, 0]), ("faces", [0, 1, 2]),
                        ("vertex_normals", [0, 0, 1] * 3), ("vertex_texcoords", [0, 0, 1, 0, 0.5, 1])):
        params[name] = type(params[name])(np.array(array, dtype=np.uint32 if name == "faces" else np.float32))
    params.update()
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "aov", "aovs": "dd:depth,nn:sh_normal,uv:uv,pp:position",
                       "img": {"type": "path", "max_depth": 4}},
        "sensor": {"type": "perspective", "fov": 45, "to_world": mi.ScalarTransform4f().look_at(
            origin=[0, 0, 5], target=[0, 0, 0], up=[0, 1, 0]),
            "film": {"type": "hdrfilm", "width": 12, "height": 10, "rfilter": {"type": "box"}},
            "sampler": {"type": "independent", "sample_count": 4}},
        "emitter": {"type": "envmap", "bitmap": mi.Bitmap(np.tile(ramp, (2, 4, 1))),
                    "to_world": mi.ScalarTransform4f().rotate([0, 1, 0], 30)},
        "sphere": {"type": "sphere", "radius": 0.6, "bsdf": bsdf},
        "cube": {"type": "cube", "to_world": mi.ScalarTransform4f().translate([1.2, 0.5, 0.5]).scale(0.3),
                 "bsdf": bsdf},
        "mesh_0000": mesh})
    image = np.array(mi.render(scene, spp=4, seed=1))
    plain = np.array(mi.render(scene, spp=4, seed=2, integrator=mi.load_dict({"type": "path", "max_depth": 3})))
    if variant.startswith("scalar"):
        rays = [mi.Ray3f(mi.Point3f(0, 0, 5), mi.Vector3f(0, 0, -1))]
    else:
        rays = [mi.Ray3f(mi.Point3f(0, 0, 5), dr.normalize(mi.Vector3f(mi.Float([0.0, 0.1, 3.0]), 0, -1)))]
    for ray in rays:
        pi = scene.ray_intersect_preliminary(ray, coherent=True)
        si = pi.compute_surface_interaction(ray, active=pi.is_valid())
        values = [si.t, si.uv.x, si.sh_frame.n.z, si.n.z, scene.ray_test(ray), pi.shape_index]
        dr.eval(*values)
        hits = np.array(pi.is_valid()).astype(bool).reshape(-1)
        if not hits[0] or not np.isfinite(np.array(si.t).reshape(-1)[hits]).all():
            raise SystemExit("probe: ray casts are wrong")
    if not (np.isfinite(image).all() and np.isfinite(plain).all() and image[..., :3].mean() > 0
            and plain.mean() > 0):
        raise SystemExit("probe: the rendered image is not finite and positive")
    print("ok", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        _probe(sys.argv[2])
    else:
        sys.exit("usage: python -m neural_render.render.mitsuba_variant --probe VARIANT")
