"""Where a layer's activations are read: its output, or before its ReLU (`layer_point`).

IMI and the occlusion study read units before the ReLU: after it, every image that drives a
unit below zero ties at exactly 0, and the "least activating" exemplars are then arbitrary.
A capture point is a module whose *output* is the value wanted, so the rest of the pipeline
(activations, feature visualizations, validity) reads it like any layer; the unit's layer
name is that module's name, which the manifest records next to the layer asked for.

Resolution of `pre_relu` for a layer L:
- L is an activation module inside an `nn.Sequential`: the module just before it.
- L is an `nn.Sequential` ending in an activation: the module before that activation.
- L is a conv + batch norm + functional ReLU block (torchvision's `BasicConv2d`, GoogLeNet
  and Inception v3): its `bn`.
- L ends without an activation (EfficientNet-Lite's `MBConvBlock`: a linear bottleneck, batch
  norm then the residual add): its output already is pre-activation, so L itself.
- anything else: an error naming the layer and what to pick instead.

Builtin models (EfficientNet-Lite0/1/2): `_blocks.N` -> itself (no activation after a
block); `_bn0` and `_bn1` (stem and head batch norms, a ReLU6 follows in `forward`) ->
themselves, as their outputs are pre-activation.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from server.errors import AppError
from server.stimuli.models import LoadedModel

LayerPoint = Literal["pre_relu", "output"]

ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.ELU,
    nn.Mish,
)
# Blocks whose output is pre-activation by construction (no activation after them).
PRE_ACTIVATION_OUTPUT = ("MBConvBlock", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Linear")


class NoPreReluPoint(AppError):
    status_code = 422


def _parent(model: LoadedModel, layer: str) -> tuple[str, nn.Module] | None:
    if "." not in layer:
        return ("", model.module)
    parent = layer.rsplit(".", 1)[0]
    return parent, model.get_layer(parent)


def resolve_layer_point(model: LoadedModel, layer: str, point: LayerPoint) -> str:
    """The module name whose output is `layer` read at `point` (see the module doc)."""
    module = model.get_layer(layer)
    if point == "output":
        return layer
    if isinstance(module, ACTIVATIONS):
        parent_name, parent = _parent(model, layer)
        children = list(parent.named_children())
        names = [name for name, _ in children]
        own = layer.rsplit(".", 1)[-1]
        if isinstance(parent, nn.Sequential) and names.index(own) > 0:
            before = names[names.index(own) - 1]
            return f"{parent_name}.{before}" if parent_name else before
        raise NoPreReluPoint(
            f"layer {layer!r} is an activation that is not a step of a Sequential (it may be "
            "applied several times): pick the batch norm or convolution before it "
            f"(psychinterp models layers {model.spec.name}) or use layer_point: output"
        )
    if isinstance(module, nn.Sequential):
        children = list(module.named_children())
        if len(children) >= 2 and isinstance(children[-1][1], ACTIVATIONS):
            return f"{layer}.{children[-2][0]}"
    children = dict(module.named_children())
    if type(module).__name__ == "BasicConv2d" and isinstance(children.get("bn"), nn.BatchNorm2d):
        return f"{layer}.bn"
    if type(module).__name__ in PRE_ACTIVATION_OUTPUT:
        return layer
    raise NoPreReluPoint(
        f"cannot tell where layer {layer!r} ({type(module).__name__}) of {model.spec.name} is "
        "before its ReLU: pick a batch norm or convolution inside it (psychinterp models "
        f"layers {model.spec.name}) or use layer_point: output"
    )


def resolve_layers(
    model: LoadedModel, layers: list[str], points: dict[str, LayerPoint]
) -> dict[str, str]:
    """{layer asked for: module read}, in the order of `layers`."""
    return {
        layer: resolve_layer_point(model, layer, points.get(layer, "output")) for layer in layers
    }
