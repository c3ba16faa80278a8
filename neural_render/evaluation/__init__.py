"""Evaluation: the loops that score models against baselines on held-out sets, :mod:`~neural_render.evaluation.stats`
(paired hierarchical bootstrap over env-map groups of clips and Holm-Bonferroni correction across the rows of a
comparison table, pure numpy) and :mod:`~neural_render.evaluation.report` (the tables and JSON records built from
them). This ``__init__`` imports nothing heavy: import the submodules you need."""
