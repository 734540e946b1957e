"""The render-only model copy: batch norms and padding folded away, outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from server.stimuli.folding import fold_for_rendering
from server.stimuli.models import LoadedModel, ModelSpec, Preprocessing
from server.stimuli.units import LayerCapture


def _outputs(model: LoadedModel, layers: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad(), LayerCapture(model, layers, reduce=False) as capture:
        return capture.run(x)


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_lite0_folds_every_batch_norm_and_keeps_the_outputs(lite0):
    layers = ["_blocks.3", "_blocks.10", "_blocks.15._bn2"]
    folded = fold_for_rendering(lite0, layers)
    assert folded is not lite0
    assert _count(lite0.module, nn.BatchNorm2d) == 49  # the original is untouched
    assert _count(folded.module, nn.BatchNorm2d) == 0
    # the stride-1 "same" paddings moved into their convolutions; stride-2 ones are asymmetric
    assert 0 < _count(folded.module, nn.ZeroPad2d) < _count(lite0.module, nn.ZeroPad2d)
    x = lite0.normalizer()(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(5)))
    want, got = _outputs(lite0, layers, x), _outputs(folded, layers, x)
    for layer in layers:
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-3, atol=1e-3)
    assert not any(p.requires_grad for p in folded.module.parameters())


def test_a_requested_convolution_keeps_its_raw_output(lite0):
    layer = "_blocks.3._project_conv"
    folded = fold_for_rendering(lite0, [layer])
    assert isinstance(folded.module.get_submodule("_blocks.3._bn2"), nn.BatchNorm2d)
    x = lite0.normalizer()(torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(6)))
    torch.testing.assert_close(
        _outputs(folded, [layer], x)[layer], _outputs(lite0, [layer], x)[layer]
    )


class _ConvUsedTwice(nn.Module):
    """conv -> bn, but the raw conv output is also added back: folding would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv(x)
        return self.head(self.bn(c) + c)


def _tiny(module: nn.Module) -> LoadedModel:
    torch.manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
    spec = ModelSpec(
        name="tiny",
        source="python",
        preprocessing=Preprocessing(image_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3),
    )
    return LoadedModel(
        spec=spec, module=module.eval().requires_grad_(False), device=torch.device("cpu")
    )


def test_a_fold_that_would_change_outputs_falls_back_to_the_original_with_a_warning():
    model = _tiny(_ConvUsedTwice())
    with pytest.warns(UserWarning, match="changed the outputs"):
        result = fold_for_rendering(model, ["head"])
    assert result is model
    assert isinstance(model.module.bn, nn.BatchNorm2d)


def test_a_separate_symmetric_pad_moves_into_the_convolution():
    module = nn.Sequential(nn.ZeroPad2d(2), nn.Conv2d(3, 5, 5), nn.BatchNorm2d(5), nn.ReLU())
    model = _tiny(module)
    folded = fold_for_rendering(model, ["3"])
    assert [type(m) for m in folded.module] == [nn.Identity, nn.Conv2d, nn.Identity, nn.ReLU]
    assert folded.module[1].padding == (2, 2)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(folded.module(x), model.module(x), rtol=1e-4, atol=1e-5)


def test_an_asymmetric_same_pad_becomes_a_bigger_kernel_on_depthwise_convs_only():
    depthwise = nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(3, 3, 5, stride=2, groups=3))
    dense = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, stride=2))
    for module, folds in ((depthwise, True), (dense, False)):
        model = _tiny(nn.Sequential(module, nn.ReLU()))
        x = torch.randn(2, 3, 16, 16)
        want = model.module(x)
        folded = fold_for_rendering(model, ["1"])
        if folds:
            conv = folded.module[0][1]
            assert isinstance(folded.module[0][0], nn.Identity)
            assert conv.weight.shape[-2:] == (6, 6) and conv.padding == (2, 2)
        else:
            assert folded is model
        torch.testing.assert_close(folded.module(x), want, rtol=1e-4, atol=1e-5)
