"""Latent codecs: video (B, T, 3, H, W) in [-1, 1] <-> latents (B, T', C, h, w), and a latent cache for training.

Implementations
  * :class:`PixelUnshuffleCodec` — weight-free space-to-depth (C = 3 f^2, h = H/f); decode(encode(x)) == x bitwise.
    For tiny CPU models only (it compresses nothing).
  * :class:`DiffusersVAECodec` — wraps a diffusers VAE, with the latent normalisation from the VAE config:
      AutoencoderKLTemporalDecoder (SVD): per-frame encoder, temporal decoder; z = scaling_factor * mode.
      AutoencoderKL (image VAE, per frame): z = (mode - shift_factor) * scaling_factor (shift 0 if absent).
      AutoencoderKLWan: causal video VAE, T = 1 + 4k frames -> T' = 1 + k latent frames; z = (mode - mean) / std
      with per-channel latents_mean/std from the config. Other T are REJECTED (NeuralRenderError); no padding.
    Posterior: the distribution mode by default (deterministic, cacheable); ``encode(x, generator=g)`` samples.

Chunking (bounds memory; ``chunk_size`` None = all at once)
  * image VAE / SVD encoder: chunks of ``chunk_size`` frames; frames are independent, so chunked == unchunked.
  * SVD temporal decoder: chunks are temporal windows of ``chunk_size`` frames decoded with ``num_frames`` =
    window length, exactly like the SVD pipeline's ``decode_chunk_size``. The decoder mixes frames inside a window,
    so different chunk sizes give (slightly) different videos; each window equals decoding that window alone.
  * Wan: the VAE itself already walks time causally (first frame, then 4-frame chunks with a feature cache), so
    memory is bounded over time by diffusers; ``chunk_size`` here chunks CLIPS (batch), chunked == unchunked.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from neural_render.errors import NeuralRenderError

#: the stored config of a weight-free codec: its constructor arguments
CODEC_CONFIG = "codec_config.json"


class LatentCodec(ModelMixin, abc.ABC):
    """Interface: ``encode`` (B,T,3,H,W) in [-1,1] -> (B,T',C,h,w); ``decode`` back. Attributes below.

    A diffusers ``ModelMixin`` (a pipeline component diffusers' loader reads with :meth:`from_pretrained`). The
    default persistence is for weight-free codecs: ``codec_config.json`` = the constructor arguments, read back from
    same-named attributes; codecs with weights override both methods."""

    latent_channels: int
    spatial_factor: int
    temporal_factor: int = 1
    temporal_rule: str = "any T >= 1; T' = T"

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> latents (B, T', C, h, w); ``generator`` for stochastic encoders."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, T', C, h, w) -> (B, T, 3, H, W) in about [-1, 1]."""

    def latent_frames(self, num_frames: int) -> int:
        """Video frame count T -> latent frame count T' (raises if T is not allowed)."""
        return num_frames

    @abc.abstractmethod
    def signature(self) -> str:
        """String identifying this codec's config and weights (used as a latent-cache validity key)."""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Write ``codec_config.json`` (the constructor arguments) into ``save_directory``, atomically."""
        from neural_render.io.atomic import atomic_dir
        from neural_render.models.persistence import init_args

        config = init_args(self)
        with atomic_dir(save_directory) as tmp:
            Path(tmp, CODEC_CONFIG).write_text(json.dumps(config))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> LatentCodec:
        """Rebuild from ``codec_config.json`` (NeuralRenderError naming it when missing or bad); ``kwargs``:
        diffusers' loading options, ignored (no weights)."""
        path = Path(pretrained_model_name_or_path) / CODEC_CONFIG
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise NeuralRenderError(f"cannot rebuild codec: {err}", path) from None

    def _check_video(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.ndim != 5 or x.shape[2] != 3:
            raise NeuralRenderError(f"video must be (B,T,3,H,W), got {tuple(getattr(x, 'shape', ()))}",
                                    type(self).__name__)
        h, w = x.shape[-2:]
        if h % self.spatial_factor or w % self.spatial_factor:
            raise NeuralRenderError(f"frame size {h}x{w} must be a multiple of {self.spatial_factor}",
                                    type(self).__name__)
        self.latent_frames(x.shape[1])

    def _check_latent(self, z: torch.Tensor) -> None:
        if not torch.is_tensor(z) or z.ndim != 5 or z.shape[2] != self.latent_channels:
            raise NeuralRenderError(
                f"latent must be (B,T',{self.latent_channels},h,w), got {tuple(getattr(z, 'shape', ()))}",
                type(self).__name__
            )


class PixelUnshuffleCodec(LatentCodec):
    """Weight-free invertible codec: (B,T,3,H,W) -> (B,T,3 f^2,H/f,W/f) by pixel unshuffle (a permutation)."""

    def __init__(self, factor: int = 4):
        super().__init__()
        if int(factor) < 1:
            raise NeuralRenderError(f"pixel-unshuffle factor must be >= 1, got {factor}")
        self.factor = int(factor)
        self.spatial_factor = self.factor
        self.latent_channels = 3 * self.factor**2

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check_video(x)
        return F.pixel_unshuffle(x.flatten(0, 1), self.factor).unflatten(0, x.shape[:2])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self._check_latent(z)
        return F.pixel_shuffle(z.flatten(0, 1), self.factor).unflatten(0, z.shape[:2])

    def signature(self) -> str:
        return f"pixel_unshuffle:{self.factor}"


_VAE_KINDS = {"AutoencoderKLTemporalDecoder": "svd", "AutoencoderKL": "image", "AutoencoderKLWan": "wan"}


def _chunks(n: int, size: int | None):
    size = n if not size or size <= 0 else int(size)
    for start in range(0, n, size):
        yield start, min(n, start + size)


class DiffusersVAECodec(LatentCodec):
    """Codec around a diffusers VAE (see module docstring). vae: the module; chunk_size: see Chunking."""

    def __init__(self, vae: nn.Module, chunk_size: int | None = None):
        super().__init__()
        name = type(vae).__name__
        if name not in _VAE_KINDS:
            raise NeuralRenderError(f"unsupported VAE class {name}; supported: {sorted(_VAE_KINDS)}")
        self.vae = vae.eval()
        self.vae_kind = _VAE_KINDS[name]
        self.chunk_size = chunk_size
        cfg = vae.config
        if self.vae_kind == "wan":
            self.latent_channels = int(cfg.z_dim)
            self.spatial_factor = 2 ** (len(cfg.dim_mult) - 1) * int(cfg.patch_size or 1)
            self.temporal_factor = 2 ** sum(bool(v) for v in cfg.temperal_downsample)
            if 4 % self.temporal_factor:
                raise NeuralRenderError(f"Wan VAE temporal factor {self.temporal_factor} does not divide its 4-frame "
                                        "chunks")
            self.temporal_rule = f"T = 1 + 4k frames; T' = 1 + (T - 1) / {self.temporal_factor}"
            c = self.latent_channels
            mean, std = (torch.tensor(v, dtype=torch.float32)[:c] for v in (cfg.latents_mean, cfg.latents_std))
            self.register_buffer("latents_mean", mean, persistent=False)
            self.register_buffer("latents_std", std, persistent=False)
            if self.latents_mean.numel() != self.latent_channels or self.latents_std.numel() != self.latent_channels:
                raise NeuralRenderError(f"Wan VAE config needs {self.latent_channels} latents_mean/std values")
        else:
            self.latent_channels = int(cfg.latent_channels)
            self.spatial_factor = 2 ** (len(cfg.block_out_channels) - 1)
            self.scaling_factor = float(cfg.scaling_factor)
            self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self._signature: str | None = None

    # ---- frame rules ----------------------------------------------------------------------------------
    def latent_frames(self, num_frames: int) -> int:
        if self.vae_kind != "wan":
            return num_frames
        if num_frames < 1 or (num_frames - 1) % 4:
            raise NeuralRenderError(f"Wan VAE needs 1 + 4k frames (1, 5, 9, ...), got {num_frames}", "AutoencoderKLWan")
        return 1 + (num_frames - 1) // self.temporal_factor

    def video_frames(self, latent_frames: int) -> int:
        return latent_frames if self.vae_kind != "wan" else 1 + (latent_frames - 1) * self.temporal_factor

    # ---- encode / decode ------------------------------------------------------------------------------
    def _posterior(self, dist, generator):
        return dist.mode() if generator is None else dist.sample(generator=generator)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, T, 3, H, W) in [-1, 1] -> (B, T', C, H/f, W/f) normalised latents (float32)."""
        self._check_video(x)
        x = x.to(self.vae.dtype)
        if self.vae_kind == "wan":
            video = x.permute(0, 2, 1, 3, 4)
            parts = [self._posterior(self.vae.encode(video[a:b]).latent_dist, generator)
                     for a, b in _chunks(x.shape[0], self.chunk_size)]
            z = torch.cat(parts).float()
            shape = (1, -1, 1, 1, 1)
            z = (z - self.latents_mean.view(shape)) / self.latents_std.view(shape)
            return z.permute(0, 2, 1, 3, 4)
        frames = x.flatten(0, 1)
        parts = [self._posterior(self.vae.encode(frames[a:b]).latent_dist, generator)
                 for a, b in _chunks(frames.shape[0], self.chunk_size)]
        z = (torch.cat(parts).float() - self.shift_factor) * self.scaling_factor
        return z.unflatten(0, x.shape[:2])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, T', C, h, w) normalised latents -> (B, T, 3, h f, w f) video (float32)."""
        self._check_latent(z)
        if self.vae_kind == "wan":
            shape = (1, 1, -1, 1, 1)
            z = (z.float() * self.latents_std.view(shape) + self.latents_mean.view(shape)).to(self.vae.dtype)
            latents = z.permute(0, 2, 1, 3, 4)
            parts = [self.vae.decode(latents[a:b]).sample for a, b in _chunks(z.shape[0], self.chunk_size)]
            return torch.cat(parts).float().permute(0, 2, 1, 3, 4)
        z = (z.float() / self.scaling_factor + self.shift_factor).to(self.vae.dtype)
        if self.vae_kind == "svd":
            parts = []
            for a, b in _chunks(z.shape[1], self.chunk_size):
                window = z[:, a:b]
                out = self.vae.decode(window.flatten(0, 1), num_frames=b - a).sample
                parts.append(out.unflatten(0, window.shape[:2]))
            return torch.cat(parts, dim=1).float()
        frames = z.flatten(0, 1)
        parts = [self.vae.decode(frames[a:b]).sample for a, b in _chunks(frames.shape[0], self.chunk_size)]
        return torch.cat(parts).float().unflatten(0, z.shape[:2])

    # ---- identity / persistence ---------------------------------------------------------------------------
    def signature(self) -> str:
        """Class + config + a fingerprint of the weights (sums per tensor), computed once."""
        if self._signature is None:
            config = {k: v for k, v in dict(self.vae.config).items() if not k.startswith("_")}
            digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode())
            with torch.no_grad():
                for name, p in self.vae.state_dict().items():
                    digest.update(f"{name}:{tuple(p.shape)}:{float(p.double().sum()):.12e}".encode())
            self._signature = f"{type(self.vae).__name__}:{digest.hexdigest()[:16]}"
        return self._signature

    def save_pretrained(self, directory: str | os.PathLike, **kwargs) -> None:
        from neural_render.io.atomic import atomic_dir

        with atomic_dir(directory) as tmp:
            self.vae.save_pretrained(tmp, safe_serialization=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, subfolder: str | None = "vae", chunk_size: int | None = None,
                        **kwargs) -> DiffusersVAECodec:
        """Load a VAE from a local diffusers folder (``<dir>/vae`` or ``<dir>`` itself); errors name the folder.
        ``kwargs``: diffusers' pipeline-loading options, ignored (the VAE loads in float32)."""
        import diffusers

        root = Path(directory)
        sub = subfolder if subfolder and (root / subfolder / "config.json").is_file() else None
        folder = root / sub if sub else root
        if not (folder / "config.json").is_file():
            raise NeuralRenderError(f"not a diffusers VAE folder: no config.json (nor {subfolder}/config.json)", root)
        try:
            class_name = json.loads((folder / "config.json").read_text()).get("_class_name")
        except (OSError, ValueError) as err:
            raise NeuralRenderError(f"cannot read config.json: {err}", folder) from None
        if class_name not in _VAE_KINDS:
            raise NeuralRenderError(f"config.json class {class_name!r} is not a supported VAE {sorted(_VAE_KINDS)}",
                                    folder)
        try:
            vae = getattr(diffusers, class_name).from_pretrained(os.fspath(root), subfolder=sub, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - boundary: any library error becomes NeuralRenderError
            message = " ".join(str(err).split())[:600]
            raise NeuralRenderError(f"cannot load {class_name}: {type(err).__name__}: {message}", folder) from None
        return cls(vae, chunk_size=chunk_size)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class LatentCache:
    """Latents on disk so each clip is encoded once: ``<root>/<clip_id>/<key>.safetensors``.

    Each file stores the tensor under "latent" and the producing codec's ``signature()`` in its metadata; a
    file written by a different codec is treated as missing and re-encoded. clip_id / key: safe names
    (letters, digits, ``_ . -``; no path separators). Writes are atomic (temp file + rename).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, clip_id: str, key: str) -> Path:
        for value, what in ((clip_id, "clip id"), (key, "cache key")):
            if not isinstance(value, str) or not _SAFE_NAME.match(value):
                raise NeuralRenderError(f"unsafe {what} {value!r} (letters, digits, _ . - only)", self.root)
        return self.root / clip_id / f"{key}.safetensors"

    def get(self, clip_id: str, key: str, signature: str | None = None) -> torch.Tensor | None:
        """Cached latent or None (missing, or written by a codec with a different signature)."""
        from safetensors import safe_open

        path = self.path(clip_id, key)
        if not path.is_file():
            return None
        try:
            with safe_open(os.fspath(path), framework="pt") as f:
                meta = f.metadata() or {}
                if signature is not None and meta.get("codec") != signature:
                    return None
                return f.get_tensor("latent")
        except Exception as err:  # noqa: BLE001 - boundary: any library error becomes NeuralRenderError
            raise NeuralRenderError(f"corrupt latent cache file: {type(err).__name__}: {err}", path) from None

    def put(self, clip_id: str, key: str, latent: torch.Tensor, signature: str = "") -> Path:
        from safetensors.torch import save_file

        from neural_render.io.atomic import atomic_path

        path = self.path(clip_id, key)
        with atomic_path(path) as tmp:
            save_file({"latent": latent.detach().contiguous().cpu()}, tmp, metadata={"codec": signature})
        return path

    def get_or_compute(self, clip_id: str, key: str, compute: Callable[[], torch.Tensor], signature: str = ""
                       ) -> torch.Tensor:
        cached = self.get(clip_id, key, signature)
        if cached is not None:
            return cached
        latent = compute()
        self.put(clip_id, key, latent, signature)
        return latent.detach().cpu()

    def encode(self, codec: LatentCodec, clip_id: str, key: str, video: torch.Tensor | Callable[[], torch.Tensor]
               ) -> torch.Tensor:
        """Latent of one clip (video (1,T,3,H,W) or a callable loading it), encoded by ``codec`` at most once."""

        def compute():
            x = video() if callable(video) else video
            with torch.no_grad():
                return codec.encode(x)

        return self.get_or_compute(clip_id, key, compute, codec.signature())
