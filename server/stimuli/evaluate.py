"""Top-1 accuracy on an ImageFolder: the check that preprocessing matches the weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from server.stimuli.images import ImageFileDataset, scan_image_folder
from server.stimuli.models import LoadedModel


@dataclass
class EvaluationResult:
    top1: float
    n: int
    skipped: int
    skipped_files: list[str]


def evaluate_top1(
    model: LoadedModel,
    images_dir: str | Path,
    batch_size: int = 32,
    num_workers: int = 0,
    class_indices: list[int] | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Top-1 over an ImageFolder whose sorted class folders are the model's class order.

    `class_indices` maps folder k to model output class_indices[k] when a folder holds
    only some of the classes; by default folder k is class k.
    """
    image_set = scan_image_folder(images_dir, require_classes=True)
    pre = model.preprocessing
    dataset = ImageFileDataset(
        image_set.files, image_set.labels, pre.pil_to_input(), pre.image_size
    )
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    mapping = torch.tensor(class_indices if class_indices else range(len(image_set.classes)))
    correct = total = 0
    skipped: list[str] = []
    with torch.inference_mode():
        for inputs, labels, indices, ok in tqdm(
            loader, desc=f"evaluate {model.spec.name}", unit="batch", disable=not progress
        ):
            skipped.extend(str(image_set.files[i]) for i in indices[~ok].tolist())
            if not ok.any():
                continue
            logits = model.module(inputs[ok].to(model.device))
            predicted = logits.argmax(dim=1).cpu()
            correct += int((predicted == mapping[labels[ok]]).sum())
            total += int(ok.sum())
    return EvaluationResult(
        top1=correct / total if total else 0.0, n=total, skipped=len(skipped), skipped_files=skipped
    )
