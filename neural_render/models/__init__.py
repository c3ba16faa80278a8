"""Models: backbone adapters (SVD, Wan), latent codecs, LoRA, pass/task embedding; denoiser and task models.

Submodules import diffusers/peft lazily, so ``import neural_render.models`` stays cheap.
"""
