"""The one backbone interface every task uses: (noisy, timestep(s), cond, context, added) -> prediction.

Everything is in the project layout (B, T, C, h, w) on latents: ``T`` latent frames, ``C`` latent channels,
``h, w`` latent height/width. Adapters (svd.py, wan.py) permute to their model's own layout internally.

Attributes every adapter sets:
    latent_channels  C: channels of the noisy latent and of the prediction.
    cond_channels    Cc: condition channels concatenated to the noisy latent along C (0 = none).
    context_dim      D of context tokens (B, L, D) fed to cross-attention, or None.
    spatial_multiple h and w must be multiples of this.
    frame_rule       :class:`FrameRule`: which latent frame counts T are allowed.
    token_dim        channels of the patch-embedded tokens (for ``added["token_add"]``).
    autocast_dtype   None (fp32) or torch.bfloat16/float16: forward runs under torch.autocast; outputs float32.

``added`` hook dict (later features; unknown keys raise):
    "token_add":  (B, T', token_dim, h', w') with (T', h', w') = ``token_grid(T, h, w)``, added to the output
                  of the input projection (SVD ``conv_in``, Wan ``patch_embedding``); None/zeros = no-op.
    adapter-specific keys are listed in the adapter's ``ADDED_KEYS``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable

import torch
from diffusers.models.modeling_utils import ModelMixin

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone.registry import register_backbone

_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def parse_autocast_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """'bfloat16'/'bf16'/'float16'/'fp16'/torch dtype/None ('none', 'float32', 'fp32' also mean None)."""
    if value is None or isinstance(value, torch.dtype) and value == torch.float32:
        return None
    if isinstance(value, torch.dtype):
        if value in (torch.bfloat16, torch.float16):
            return value
        raise NeuralRenderError(f"autocast dtype must be bfloat16 or float16, got {value}")
    key = str(value).lower().replace("torch.", "")
    if key in ("none", "float32", "fp32", ""):
        return None
    if key not in _DTYPES:
        raise NeuralRenderError(f"unknown autocast dtype {value!r}; use one of {sorted(_DTYPES)} or none")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


@dataclasses.dataclass(frozen=True)
class FrameRule:
    """Allowed latent frame counts: T >= minimum and (T - offset) % multiple == 0. Callable: rule(T) -> bool."""

    multiple: int = 1
    offset: int = 0
    minimum: int = 1
    description: str = "any T >= 1"

    def __call__(self, num_frames: int) -> bool:
        return num_frames >= self.minimum and (num_frames - self.offset) % self.multiple == 0


class VideoBackbone(ModelMixin, abc.ABC):
    """Base class of the SVD and Wan adapters. Subclasses implement ``_forward`` (same signature as ``forward``)
    and the abstract methods below, and set ``kind`` (they register themselves under it, :mod:`.registry`),
    ``SUBFOLDER`` (where the diffusers model is saved), ``MODEL_CLASS`` (the diffusers class it wraps) and
    ``INPUT_LAYER`` (the attribute of ``model`` that is the input projection, zero-expanded for condition channels).

    A diffusers ``ModelMixin`` for diffusers' pipeline loader; persistence is the project's own
    (:meth:`save_pretrained` / :meth:`from_pretrained`: ``backbone.json`` + the diffusers model folder, see
    :mod:`neural_render.models.backbone.loading`)."""

    kind: str = ""
    SUBFOLDER: str = ""
    MODEL_CLASS: str = ""
    INPUT_LAYER: str = ""
    ADDED_KEYS: tuple[str, ...] = ("token_add",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            register_backbone(cls)

    latent_channels: int
    cond_channels: int
    context_dim: int | None
    spatial_multiple: int
    frame_rule: FrameRule
    token_dim: int
    autocast_dtype: torch.dtype | None = None

    # ---- public API -------------------------------------------------------------------------------------
    def forward(
        self,
        noisy: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        added: dict | None = None,
    ) -> torch.Tensor:
        """Predict from noisy latents.

        noisy: (B, T, C, h, w) float. timestep: (B,) one per clip, or (B, T) one per latent frame (per-frame
        timesteps, e.g. clean IC-LoRA reference frames at t=0 beside noisy targets); a 0-d tensor or float is
        broadcast to (B,). cond: (B, T, Cc, h, w) or None (zeros when Cc > 0). context: (B, L, context_dim)
        or None (one zero token). added: hook dict (see module docstring). Returns (B, T, C, h, w) float32.
        """
        timestep = self.check_inputs(noisy, timestep, cond, context, added)
        if cond is None and self.cond_channels:
            b, t, _, h, w = noisy.shape
            cond = noisy.new_zeros(b, t, self.cond_channels, h, w)
        with self.autocast_context(noisy.device):
            out = self._forward(noisy, timestep, cond, context, dict(added or {}))
        return out.float()

    @abc.abstractmethod
    def _forward(self, noisy, timestep, cond, context, added: dict):
        """The adapter's call on checked inputs (see :meth:`forward`) -> (B, T, C, h, w)."""

    @abc.abstractmethod
    def token_grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Latent (T, h, w) -> (T', h', w') grid of the patch-embedded tokens."""

    @abc.abstractmethod
    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass (memory for time)."""

    @abc.abstractmethod
    def disable_gradient_checkpointing(self) -> None:
        """Back to storing activations."""

    @property
    @abc.abstractmethod
    def model(self) -> torch.nn.Module:
        """The wrapped, unmodified diffusers module (its input projection may be zero-expanded)."""

    # ---- persistence ------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Adapter settings saved beside the diffusers weights (``backbone.json``): the keys every adapter shares
        (the input projection's added channels counted on ``INPUT_LAYER``); adapters extend it with their own."""
        input_layer = getattr(self.model, self.INPUT_LAYER)
        return {
            "kind": self.kind,
            "subfolder": self.SUBFOLDER,
            "latent_channels": self.latent_channels,
            "cond_channels": self.cond_channels,
            "base_in_channels": self.base_in_channels,
            "added_input_channels": int(input_layer.in_channels) - self.base_in_channels,
            "autocast_dtype": dtype_name(self.autocast_dtype),
        }

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """Write ``backbone.json`` + the diffusers model (base weights; LoRA is saved apart) atomically."""
        from neural_render.models.backbone.loading import save_backbone

        save_backbone(self, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, cond_channels: int | None = None, **kwargs):
        """Load a folder written by :meth:`save_pretrained` as the adapter class its ``backbone.json`` names (which must
        be a ``cls``). kwargs: adapter setting overrides (``autocast_dtype``, ``added_time_ids``); diffusers' loading
        options (torch_dtype=None, device_map=None, ...) are accepted, a dtype or device map is refused."""
        from neural_render.models.backbone.loading import load_backbone

        overrides = _adapter_overrides(kwargs, pretrained_model_name_or_path)
        backbone = load_backbone(pretrained_model_name_or_path, cond_channels=cond_channels, **overrides)
        if not isinstance(backbone, cls):
            raise NeuralRenderError(f"saved backbone is {backbone.kind!r}, not a {cls.__name__}",
                                    pretrained_model_name_or_path)
        return backbone

    def autocast_context(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    # ---- validation -------------------------------------------------------------------------------------
    def check_inputs(self, noisy, timestep, cond, context, added) -> torch.Tensor:
        """Raise NeuralRenderError on bad shapes; return the timestep as a (B,) or (B, T) tensor."""
        name = f"{self.kind} backbone"
        if not torch.is_tensor(noisy) or noisy.ndim != 5:
            raise NeuralRenderError(f"noisy must be a (B,T,C,h,w) tensor, got {_shape(noisy)}", name)
        b, t, c, h, w = noisy.shape
        if c != self.latent_channels:
            raise NeuralRenderError(f"noisy has {c} channels, backbone expects {self.latent_channels}", name)
        if h % self.spatial_multiple or w % self.spatial_multiple:
            raise NeuralRenderError(f"latent size {h}x{w} must be a multiple of {self.spatial_multiple}", name)
        if not self.frame_rule(t):
            raise NeuralRenderError(f"{t} latent frames not allowed: {self.frame_rule.description}", name)
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(float(timestep), device=noisy.device)
        if timestep.ndim == 0:
            timestep = timestep.reshape(1).expand(b)
        if tuple(timestep.shape) not in ((b,), (b, t)):
            raise NeuralRenderError(f"timestep must be (B,)=({b},) or (B,T)=({b},{t}), got {_shape(timestep)}", name)
        if cond is not None:
            want = (b, t, self.cond_channels, h, w)
            if self.cond_channels == 0:
                raise NeuralRenderError("cond given but backbone has cond_channels=0 (build it with cond_channels)",
                                        name)
            if tuple(cond.shape) != want:
                raise NeuralRenderError(f"cond must be {want}, got {_shape(cond)}", name)
        if context is not None:
            if self.context_dim is None:
                raise NeuralRenderError("context given but backbone takes no context tokens", name)
            if context.ndim != 3 or context.shape[0] != b or context.shape[2] != self.context_dim:
                raise NeuralRenderError(f"context must be (B={b}, L, {self.context_dim}), got {_shape(context)}", name)
        for key in added or {}:
            if key not in self.ADDED_KEYS:
                raise NeuralRenderError(f"unknown added key {key!r}; supported: {list(self.ADDED_KEYS)}", name)
        token_add = (added or {}).get("token_add")
        if token_add is not None:
            want = (b, *self._token_shape(t, h, w))
            if tuple(token_add.shape) != want:
                raise NeuralRenderError(f"added['token_add'] must be {want} (B,T',token_dim,h',w'), got "
                                        f"{_shape(token_add)}", name)
        return timestep

    def _token_shape(self, t: int, h: int, w: int) -> tuple[int, int, int, int]:
        tt, hh, ww = self.token_grid(t, h, w)
        return (tt, self.token_dim, hh, ww)


#: options diffusers' pipeline loader passes to every ModelMixin component; the backbone loads in float32 on the CPU
_DIFFUSERS_LOADING_OPTIONS = {"torch_dtype", "device_map", "max_memory", "offload_folder", "offload_state_dict",
                              "variant", "use_safetensors", "low_cpu_mem_usage", "disable_mmap", "use_flashpack",
                              "quantization_config", "local_files_only"}


def _adapter_overrides(kwargs: dict, source) -> dict:
    """Split from_pretrained kwargs: diffusers' loading options (accepted at their defaults) vs adapter overrides."""
    overrides = {}
    for key, value in kwargs.items():
        if key not in _DIFFUSERS_LOADING_OPTIONS:
            overrides[key] = value
        elif key in ("torch_dtype", "device_map", "quantization_config") and value not in (None, torch.float32):
            raise NeuralRenderError(f"backbone folders load in float32 on the CPU (move or autocast afterwards); "
                                    f"got {key}={value!r}", source)
    return overrides


def _shape(x) -> str:
    return str(tuple(x.shape)) if torch.is_tensor(x) else type(x).__name__


class HookState:
    """Per-forward values read by the adapters' persistent module hooks (plain object so deepcopy keeps it
    consistent)."""

    def __init__(self) -> None:
        self.token_add: torch.Tensor | None = None
        self.frame_temb: torch.Tensor | None = None

    @contextlib.contextmanager
    def using(self, **values):
        old = {k: getattr(self, k) for k in values}
        for k, v in values.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)


def add_tokens_hook(state: HookState, to_output_layout: Callable, module, inputs, output):
    """Forward hook on the input projection: output + state.token_add (mapped to the module's output layout)."""
    if state.token_add is None:
        return None
    return output + to_output_layout(state.token_add).to(output.dtype)
