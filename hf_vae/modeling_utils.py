"""What every hf_vae model shares: input checks, weight init, and saving its own code beside the weights.

`save_pretrained` writes the modeling files flat into the folder (relative imports rewritten to
`from .x import`) and an `auto_map` in config.json, so the folder, or a Hub repo made from it, loads
with `AutoModel.from_pretrained(..., trust_remote_code=True)` where hf_vae is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

# `from .x import`, `from ..x import`, `from ...x import`: the package's own modules.
_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+)(\.+)(\w+)(\s+import\b)", flags=re.MULTILINE)


def check_pixel_values(pixel_values, num_channels: int, image_size: int, name: str = "pixel_values") -> None:
    """Raise `ValueError` unless `pixel_values` is a float tensor (B, C, H, W) of the configured size in [0, 1]."""
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(pixel_values).__name__}")
    if not pixel_values.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor with values in [0, 1], got dtype {pixel_values.dtype}")
    expected = (num_channels, image_size, image_size)
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
        raise ValueError(f"`{name}` must have shape (batch, {', '.join(map(str, expected))}), got {tuple(pixel_values.shape)}")
    if pixel_values.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one image, got batch size 0")
    if torch.isnan(pixel_values).any():
        raise ValueError(f"`{name}` must not contain NaN, got {int(torch.isnan(pixel_values).sum())} NaN values")
    low, high = float(pixel_values.min()), float(pixel_values.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"`{name}` must have values in [0, 1], got values in [{low:.4g}, {high:.4g}]")


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator or None, got {type(generator).__name__}")


def _resolve(module, dots: str, name: str) -> str:
    return importlib.util.resolve_name(dots + name, module.__package__)


def remote_code_sources(module_name: str) -> dict[str, str]:
    """The source of `module_name` and of every package module it imports relatively, flattened.

    Returns {file name: source with relative imports rewritten to one dot}. File names must be
    unique across the package for the flat layout to work (the families keep them so).
    """
    sources: dict[str, str] = {}
    pending = [module_name]
    while pending:
        module = importlib.import_module(pending.pop())
        path = Path(module.__file__)
        if path.name in sources:
            continue
        text = path.read_text(encoding="utf-8")
        for match in _RELATIVE_IMPORT.finditer(text):
            pending.append(_resolve(module, match.group(2), match.group(3)))
        sources[path.name] = _RELATIVE_IMPORT.sub(r"\1.\3\4", text)
    return sources


class HfVaePreTrainedModel(PreTrainedModel):
    """Base class of the hf_vae models (weight init, input checks, self-contained `save_pretrained`)."""

    main_input_name = "pixel_values"
    base_model_prefix = "model"
    # The AutoModel class that loads this family from its own saved code.
    _remote_auto_class = "AutoModel"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default init for conv/linear/embedding/norm layers. transformers guards the
        # torch.nn.init functions during `from_pretrained`, so loaded weights are never overwritten.
        if module is not self and hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (safetensors only) plus the modeling code and `auto_map`.

        The code files make the folder loadable with `trust_remote_code=True` without hf_vae.
        """
        if kwargs.get("safe_serialization") is False:
            raise ValueError("`safe_serialization` must be True: hf_vae writes safetensors only, got False")
        config_module = type(self.config).__module__
        model_module = type(self).__module__
        self.config.auto_map = {
            "AutoConfig": f"{config_module.rsplit('.', 1)[-1]}.{type(self.config).__name__}",
            self._remote_auto_class: f"{model_module.rsplit('.', 1)[-1]}.{type(self).__name__}",
        }
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            sources = remote_code_sources(config_module) | remote_code_sources(model_module)
            for file_name, text in sources.items():
                Path(save_directory, file_name).write_text(text, encoding="utf-8")
        return result

