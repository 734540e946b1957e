"""Model registry and preprocessing, checked against the real weights (not a constant)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from server.cli import app
from server.stimuli.demo_images import LABELLED_PHOTOS, build_labelled_folder, load_photo
from server.stimuli.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    UnknownLayer,
    load_model,
)


def _mean_loss(model, preprocessing: Preprocessing) -> float:
    """Cross-entropy of the labelled photos' true classes under a given preprocessing."""
    transform = preprocessing.pil_to_input()
    batch = torch.stack([transform(load_photo(name)) for name in LABELLED_PHOTOS])
    labels = torch.tensor(list(LABELLED_PHOTOS.values()))
    with torch.inference_mode():
        return float(F.cross_entropy(model.module(batch), labels))


def test_lite0_classifies_known_photos(lite0):
    transform = lite0.preprocessing.pil_to_input()
    batch = torch.stack([transform(load_photo(name)) for name in LABELLED_PHOTOS])
    with torch.inference_mode():
        predicted = lite0.module(batch).argmax(1).tolist()
    assert predicted == list(LABELLED_PHOTOS.values())


def test_model_normalisation_beats_imagenet_and_none(lite0):
    own = _mean_loss(lite0, lite0.preprocessing)
    imagenet = _mean_loss(lite0, Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD))
    none = _mean_loss(lite0, Preprocessing(224, 256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    assert own < imagenet and own < none


def test_unknown_layer_lists_layers(lite0):
    with pytest.raises(UnknownLayer) as info:
        lite0.get_layer("_blocks.99")
    assert "_blocks.3" in info.value.message and "models layers" in info.value.message


@pytest.mark.parametrize("name,size", [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_bigger_lites_load_with_their_input_size(name, size):
    model = load_model(name)
    assert model.preprocessing.image_size == size
    with torch.inference_mode():
        assert model.module(torch.zeros(1, 3, size, size)).shape == (1, 1000)


def test_evaluate_cli_prints_top1_and_skips_corrupt(tmp_path):
    folder = build_labelled_folder(tmp_path / "val", per_photo=2)
    (folder / "class_0282" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = CliRunner().invoke(
        app,
        ["models", "evaluate", "efficientnet-lite0", "--images", str(folder), "--batch-size", "4"],
    )
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("top1=") and last.endswith("n=6")
    assert float(last.split()[0].split("=")[1]) >= 0.5
    assert "skipped 1 unreadable" in result.output
