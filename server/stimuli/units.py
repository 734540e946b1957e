"""Units of a model: which channels/neurons a study looks at, and how to read them out.

A unit is (model, layer, index). Its activation on one image is one number: the spatial
mean of its channel (conv maps), the neuron itself (linear layers) or the token mean of
its channel (ViT blocks, batch x tokens x channels), as in IMI.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from server.errors import AppError
from server.stimuli.models import LoadedModel


class UnitOutOfRange(AppError):
    status_code = 422


@dataclass(frozen=True, order=True)
class UnitRef:
    model: str
    layer: str
    index: int


def reduce_units(output: torch.Tensor) -> torch.Tensor:
    """Layer output -> (batch, units): spatial mean (conv), identity (linear), token mean (ViT)."""
    if output.dim() == 4:
        return output.mean(dim=(2, 3))
    if output.dim() == 3:
        return output.mean(dim=1)
    if output.dim() == 2:
        return output
    raise AppError(f"cannot read units from a layer output of shape {tuple(output.shape)}")


class _StopForward(Exception):
    """Raised by a hook once every requested layer has fired: the rest of the net is waste."""


class LayerCapture:
    """Forward hooks on some layers that keep their unit read-outs for the current pass.

    Use as a context manager: hooks are removed on exit, also after an error, so no hook
    outlives the pass that needed it. With `stop_early`, the forward pass is cut off
    after the last requested layer has run (`run` swallows that early exit).
    """

    def __init__(
        self,
        model: LoadedModel,
        layers: Iterable[str],
        reduce: bool = True,
        stop_early: bool = True,
    ):
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = {name: model.get_layer(name) for name in self.layers}
        self.reduce = reduce
        self.stop_early = stop_early
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Self:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple):
                output = output[0]
            self.outputs[name] = reduce_units(output) if self.reduce else output
            if self.stop_early and len(self.outputs) == len(self.layers):
                raise _StopForward

        return hook

    def run(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward pass; returns {layer: output} for this pass."""
        self.outputs = {}
        try:
            self.model.module(inputs)
        except _StopForward:
            pass
        missing = [name for name in self.layers if name not in self.outputs]
        if missing:
            raise AppError(f"layers {missing} did not run in the forward pass of this model")
        return self.outputs


def count_forward_hooks(module: torch.nn.Module) -> int:
    """Forward hooks registered anywhere in `module` (tests use it to prove none leak)."""
    return sum(len(m._forward_hooks) for m in module.modules())


def layer_widths(model: LoadedModel, layers: Iterable[str]) -> dict[str, int]:
    """Number of units of each layer, from one forward pass on a blank image."""
    size = model.preprocessing.image_size
    with torch.inference_mode(), LayerCapture(model, layers) as capture:
        outputs = capture.run(torch.zeros(1, 3, size, size, device=model.device))
    return {name: int(out.shape[1]) for name, out in outputs.items()}


def layer_depths(model: LoadedModel, layers: Iterable[str]) -> dict[str, float]:
    """Relative depth 0..1 of each layer: its position among the model's named modules."""
    names = model.layer_names()
    last = max(len(names) - 1, 1)
    for layer in layers:
        model.get_layer(layer)  # clear error for unknown layers
    return {layer: names.index(layer) / last for layer in layers}


def _layer_rng(seed: int, layer: str) -> np.random.Generator:
    # Per-layer streams: adding a layer to a study does not change the others' units.
    return np.random.default_rng([seed, zlib.crc32(layer.encode())])


def sample_units(
    model: LoadedModel, layers: list[str], units_per_layer: int, seed: int
) -> list[UnitRef]:
    """`units_per_layer` distinct units per layer, uniformly at random, seeded, sorted."""
    widths = layer_widths(model, layers)
    units: list[UnitRef] = []
    for layer in layers:
        width = widths[layer]
        if units_per_layer > width:
            raise UnitOutOfRange(
                f"layer {layer!r} has {width} units; cannot sample {units_per_layer}. "
                f"Use units_per_layer <= {width}."
            )
        chosen = _layer_rng(seed, layer).choice(width, size=units_per_layer, replace=False)
        units.extend(UnitRef(model.spec.name, layer, int(i)) for i in sorted(chosen))
    return units


def check_units(model: LoadedModel, units: Iterable[UnitRef]) -> None:
    """Fail clearly if a unit's layer is missing or its index is outside the layer."""
    units = list(units)
    widths = layer_widths(model, {u.layer for u in units})
    for unit in units:
        if not 0 <= unit.index < widths[unit.layer]:
            raise UnitOutOfRange(
                f"unit {unit.index} is out of range for layer {unit.layer!r} of "
                f"{unit.model} (valid: 0..{widths[unit.layer] - 1})"
            )
