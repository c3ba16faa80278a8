"""Datasets and LightningDataModules (clip folders, latent cache) and the in-memory toy data for smoke training.

Import submodules directly (they pull in torch/lightning).
"""
