"""A render-only copy of a model: eval BatchNorms and zero padding folded into convolutions.

Feature visualization only needs input gradients through a frozen network in eval mode.
There a BatchNorm is a fixed per-channel affine map and a separate zero-padding module is
one more copy of a feature map; each costs a full memory pass forward and another one
backward. On EfficientNet-Lite0 on CPU they were about 40% of the rendering time
(profiled: batch-norm forward/backward, pad copies and fills). Folded into the convolution
they cost nothing, and the maths is unchanged:

    BN(conv(x)) = conv'(x) with  w' = w * g / sqrt(v + eps),  b' = (b - m) * g / sqrt(v + eps) + beta
    conv(zero_pad(x)) = conv(x, padding=p)   for symmetric padding

The folds are found from one probe forward pass (which module fed which tensor into
which), never from layer names, so any torchvision/timm/custom model benefits. The copy is
then checked against the original on the requested layers; if anything differs the
original is used, with a warning. Requested layers are never folded away: a convolution
that is itself a requested layer keeps its raw output.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from server.stimuli.models import LoadedModel
from server.stimuli.units import LayerCapture

_FOLDABLE = (nn.Conv2d, nn.BatchNorm2d, nn.ZeroPad2d)


@dataclasses.dataclass
class _Call:
    name: str
    module: nn.Module
    input: torch.Tensor
    output: torch.Tensor


def fold_for_rendering(model: LoadedModel, layers: Sequence[str]) -> LoadedModel:
    """A copy of `model` with foldable BatchNorm/padding removed, or `model` itself.

    `model` is returned unchanged when nothing folds, when the model is in training mode,
    or when the folded copy does not reproduce the requested layers' outputs.
    """
    if model.module.training:
        return model
    module = copy.deepcopy(model.module)
    calls = _probe_calls(module, model)
    protected = set(layers)
    n_bn = _fold_batch_norms(module, calls, protected)
    n_pad = _fold_paddings(module, calls, protected)
    if n_bn + n_pad == 0:
        return model
    folded = dataclasses.replace(model, module=module)
    if not _same_outputs(model, folded, layers):
        warnings.warn(
            f"{model.spec.name}: folding batch norms into convolutions changed the outputs "
            "of the requested layers; rendering with the original model (slower)",
            stacklevel=2,
        )
        return model
    return folded


def _probe_calls(module: nn.Module, model: LoadedModel) -> list[_Call]:
    """Every call of a conv, batch norm or zero pad in one forward pass, in order."""
    calls: list[_Call] = []
    named = [(n, m) for n, m in module.named_modules() if isinstance(m, _FOLDABLE)]

    def record(name: str):
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            calls.append(_Call(name, mod, inputs[0], output))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in named]
    try:
        with torch.no_grad():
            module(_probe_input(model))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _probe_input(model: LoadedModel, n: int = 1, seed: int = 0) -> torch.Tensor:
    size = model.preprocessing.image_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, size, size), generator=generator).to(model.device)
    return model.normalizer()(x)


def _called_once(calls: list[_Call]) -> set[str]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.name] = counts.get(call.name, 0) + 1
    return {name for name, count in counts.items() if count == 1}


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, new)


def _fold_batch_norms(module: nn.Module, calls: list[_Call], protected: set[str]) -> int:
    """conv -> BN pairs (the BN reads exactly the conv's output): scale into the conv."""
    once = _called_once(calls)
    producers = {id(c.output): c for c in calls if isinstance(c.module, nn.Conv2d)}
    folded = 0
    for call in calls:
        bn = call.module
        conv_call = producers.get(id(call.input))
        if (
            not isinstance(bn, nn.BatchNorm2d)
            or conv_call is None
            or bn.running_mean is None
            or bn.running_var is None
            or {call.name, conv_call.name} - once
            or conv_call.name in protected
        ):
            continue
        conv = conv_call.module
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.affine:
                shift = shift + bn.bias
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
            conv.weight = nn.Parameter(new_weight, requires_grad=False)
            conv.bias = nn.Parameter(bias * scale + shift, requires_grad=False)
        _replace(module, call.name, nn.Identity())
        folded += 1
    return folded


def _fold_paddings(module: nn.Module, calls: list[_Call], protected: set[str]) -> int:
    """Symmetric ZeroPad2d feeding a zero-padding-free conv: move it into the conv.

    Two shapes occur: a pad module whose output is the conv's input, and a pad that is a
    child of the conv and applied to the conv's own input (TF "same" padding wrappers).
    """
    once = _called_once(calls)
    pads_by_output = {id(c.output): c for c in calls if isinstance(c.module, nn.ZeroPad2d)}
    pads_by_input = {id(c.input): c for c in calls if isinstance(c.module, nn.ZeroPad2d)}
    folded = 0
    for call in calls:
        conv = call.module
        if not isinstance(conv, nn.Conv2d) or call.name not in once:
            continue
        pad_call = pads_by_output.get(id(call.input))
        inner = pads_by_input.get(id(call.input))
        if pad_call is None and inner is not None and inner.name.startswith(call.name + "."):
            pad_call = inner
        if pad_call is None or pad_call.name not in once or pad_call.name in protected:
            continue
        left, right, top, bottom = pad_call.module.padding
        if tuple(conv.padding) != (0, 0) or conv.padding_mode != "zeros":
            continue
        if left == right and top == bottom:
            conv.padding = (top, left)
        elif _one_more_after(left, right, top, bottom) and _is_grouped(conv):
            _shift_kernel(conv)
            conv.padding = (bottom, right)
        else:
            continue
        _replace(module, pad_call.name, nn.Identity())
        folded += 1
    return folded


def _one_more_after(left: int, right: int, top: int, bottom: int) -> bool:
    """TF "same" padding of a stride-2 conv on an even input: one more row/column after."""
    return right == left + 1 and bottom == top + 1


def _is_grouped(conv: nn.Conv2d) -> bool:
    """Depthwise/grouped and undilated: memory-bound, where a bigger kernel costs little."""
    return conv.groups > 1 and tuple(conv.dilation) == (1, 1)


def _shift_kernel(conv: nn.Conv2d) -> None:
    """Padding (p, p+1) with kernel k == padding (p+1, p+1) with kernel k+1 led by zeros.

    out[i] = sum_k w[k] x[s*i + k - p] = sum_k' w'[k'] x[s*i + k' - (p+1)] with w'[0] = 0,
    w'[k+1] = w[k]. The kernel grows by one row and column, the pad copy and its backward
    go: on Lite0's stride-2 depthwise convs that is 2-3x faster (measured on CPU).
    """
    with torch.no_grad():
        weight = nn.functional.pad(conv.weight, [1, 0, 1, 0])
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.kernel_size = tuple(weight.shape[-2:])


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for a moment: CUDA convolutions default to it, and its rounding (about 1e-3
    per layer, compounding with depth) would hide what the check looks for, a wrong fold."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def _same_outputs(original: LoadedModel, folded: LoadedModel, layers: Sequence[str]) -> bool:
    """The requested layers agree (float32 tolerance) on a random probe batch."""
    x = _probe_input(original, n=2, seed=1)
    with torch.no_grad(), full_fp32():
        with LayerCapture(original, layers, reduce=False) as capture:
            expected = capture.run(x)
        with LayerCapture(folded, layers, reduce=False) as capture:
            actual = capture.run(x)
    for layer in layers:
        want, got = expected[layer].float(), actual[layer].float()
        tolerance = 1e-3 * max(1.0, float(want.abs().max()))
        if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-3, atol=tolerance):
            return False
    return True
