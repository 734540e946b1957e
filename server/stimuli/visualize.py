"""Feature visualizations: lucent's parameterization and objectives, rendered in batches.

lucent renders one objective per `render_vis` call, hooks every module of the model, and
applies one random transform to the whole batch. Here many units, both directions and
all diversity samples share one forward/backward pass: the loss is the sum of each
entry's own objective (Adam is element-wise, so entries do not interact except through
the diversity term inside their group), transforms are drawn per entry, each batch holds
one layer's units and its forward pass stops after that layer, the network is a copy with
batch norms and paddings folded into its convolutions (`folding.py`), and hooks exist
only inside `LayerCapture`.

Every random draw is keyed by (seed, entry) or (seed, step), never by the batch layout,
so rendering with batch size 1 or 64 follows the same trajectories.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from lucent.optvis.param.color import color_correlation_normalized
from lucent.optvis.param.spatial import rfft2d_freqs
from torch import nn

from server.errors import AppError
from server.stimuli.cpu_threads import torch_threads
from server.stimuli.folding import fold_for_rendering
from server.stimuli.models import LoadedModel
from server.stimuli.units import LayerCapture, UnitRef, reduce_units

if TYPE_CHECKING:
    from server.stimuli.fv_cache import ChunkCache
    from server.stimuli.generate import FVConfig

DIRECTIONS = {"max": 1.0, "min": -1.0}


class ChunkExecutor(Protocol):
    """Renders many chunks elsewhere (the Ray runner: server/jobs/ray_runner.py).

    `render_chunks` gets the render and measure models and one `(chunk, config, seed,
    max_steps, n_entries)` tuple per chunk, and returns each chunk's visualizations in the
    same order, exactly as `_render_chunk` would: chunks are independent and every random
    draw is keyed by entry, so where a chunk renders does not change its pixels.
    `done(i, visualizations)` is called in the caller's thread as task i finishes (the
    chunk is cached and progress reported then, so a killed job keeps finished chunks).
    """

    def render_chunks(
        self,
        render_model: LoadedModel,
        measure_model: LoadedModel,
        tasks: list[tuple[list[Group], FVConfig, int, int, int]],
        done: Callable[[int, list[Visualization]], None],
    ) -> list[list[Visualization]]: ...


_CHUNK_EXECUTOR: contextvars.ContextVar[ChunkExecutor | None] = contextvars.ContextVar(
    "chunk_executor", default=None
)


@contextlib.contextmanager
def chunk_executor(executor: ChunkExecutor | None) -> Iterator[None]:
    """Render every `render_visualizations` call inside the block through `executor` (a job
    runner sets it around generation; generation itself does not know where chunks run)."""
    token = _CHUNK_EXECUTOR.set(executor)
    try:
        yield
    finally:
        _CHUNK_EXECUTOR.reset(token)


# lucent's constants: initial spectrum scale and the divisor that tames saturation.
_INIT_SD = 0.01
_MAGIC = 4.0


class FourierImages(nn.Module):
    """A batch of images parameterized as lucent's `param.image(size, fft=True, decorrelate=True)`.

    Same maths as lucent's `fft_image` + `to_valid_rgb` (which pin tensors to a module-level
    device, so `cuda:1` or `mps` break); here every tensor follows the module's device.
    """

    def __init__(self, spectrum: torch.Tensor, size: int, decay_power: float = 1.0):
        super().__init__()
        freqs = rfft2d_freqs(size, size)
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay_power
        self.size = size
        self.spectrum = nn.Parameter(spectrum)
        self.register_buffer("scale", torch.tensor(scale).float()[None, None, ..., None])
        self.register_buffer("colour", torch.tensor(color_correlation_normalized.T))

    @staticmethod
    def initial_spectrum(size: int, seed: int) -> torch.Tensor:
        """lucent's random init (normal, sd 0.01), drawn from one seeded generator per image."""
        freqs = rfft2d_freqs(size, size)
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((3, *freqs.shape, 2), generator=generator) * _INIT_SD

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.scale * self.spectrum)
        image = torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho") / _MAGIC
        image = (image.permute(0, 2, 3, 1) @ self.colour).permute(0, 3, 1, 2)
        return torch.sigmoid(image)


@dataclass(frozen=True)
class TransformDraws:
    """Per-entry random transform parameters for one step (pixel shifts, scale, degrees)."""

    shift1: torch.Tensor  # (n, 2)
    scale: torch.Tensor  # (n,)
    angle: torch.Tensor  # (n,)
    shift2: torch.Tensor  # (n, 2)


def draw_transforms(config: FVConfig, n_entries: int, seed: int, step: int) -> TransformDraws:
    """lucid's standard set, drawn independently per entry: jitter, scale, rotate, jitter."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)

    def shifts(d: int) -> torch.Tensor:
        return torch.randint(-(d // 2), d // 2 + 1, (n_entries, 2), generator=generator).float()

    def pick(values: Sequence[float]) -> torch.Tensor:
        index = torch.randint(0, len(values), (n_entries,), generator=generator)
        return torch.tensor(values, dtype=torch.float32)[index]

    return TransformDraws(
        shifts(config.jitter), pick(config.scales), pick(config.angles), shifts(config.jitter_after)
    )


def transform_batch(
    images: torch.Tensor, draws: TransformDraws, pad: int, out_size: int, crop: int | None = None
) -> torch.Tensor:
    """Pad (constant 0.5), jitter, scale, rotate, jitter, centre-crop to `crop` px, resize:
    one `grid_sample` per batch.

    The composition of the transforms is one affine map per entry, so the whole chain
    costs a single resampling, done straight at the model's input size.
    """
    n, _, size, _ = images.shape
    canvas = size + 2 * pad
    # The crop keeps the central `crop` pixels of the transformed (padded) canvas.
    crop_fraction = (crop or canvas) / canvas
    device = images.device
    theta = torch.deg2rad(draws.angle).to(device)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Output coordinate u (normalized to the padded canvas) -> source coordinate:
    # x = R(-theta) (u - t2) / s - t1, then rescaled from canvas to image coordinates.
    rot_inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    scale = draws.scale.to(device)[:, None, None]
    t1 = draws.shift1.to(device) * 2 / canvas
    t2 = draws.shift2.to(device) * 2 / canvas
    linear = rot_inv / scale * crop_fraction
    offset = -(linear @ t2[..., None]).squeeze(-1) - t1
    affine = torch.cat([linear, offset[..., None]], dim=-1) * (canvas / size)
    grid = F.affine_grid(affine, [n, 3, out_size, out_size], align_corners=False)
    # Zero padding of (image - 0.5) is lucid's constant 0.5 padding.
    sampled = F.grid_sample(
        images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled + 0.5


def diversity_penalty(features: torch.Tensor) -> torch.Tensor:
    """lucent's `diversity` loss times the group size: summed cosine similarity of Gram matrices."""
    n, channels = features.shape[:2]
    flat = features.reshape(n, channels, -1)
    grams = F.normalize(flat @ flat.transpose(1, 2), p=2, dim=(1, 2)).reshape(n, -1)
    similarity = grams @ grams.T
    return similarity.sum() - similarity.diagonal().sum()


@dataclass(frozen=True)
class Group:
    """The entries rendered for one (unit, direction): entry 0 plain, the rest diverse."""

    unit: UnitRef
    direction: str
    first_entry: int
    size: int
    alpha: float  # diversity weight


@dataclass
class Visualization:
    unit: UnitRef
    direction: str
    images: np.ndarray  # (n, H, W, 3) float32 in [0, 1]; index 0 is the non-diverse one
    activations: np.ndarray  # (n,) the unit's activation on each final image
    history: np.ndarray  # (steps,) mean signed objective of the group per step
    steps: int


def plan_groups(
    units: Sequence[UnitRef], n_diverse: int, directions: Sequence[str], alpha: float
) -> list[Group]:
    groups, entry = [], 0
    for unit in units:
        for direction in directions:
            if direction not in DIRECTIONS:
                raise AppError(f"direction must be max or min, got {direction!r}")
            groups.append(Group(unit, direction, entry, 1 + n_diverse, alpha))
            entry += 1 + n_diverse
    return groups


def _chunks(groups: list[Group], batch_size: int, split_layers: bool = True) -> list[list[Group]]:
    """Chunks of at most `batch_size` entries (a bigger group goes alone).

    With `split_layers` (CPU), one layer per chunk: the forward pass stops at the chunk's
    deepest layer, so mixed with a deep layer an early layer's entries would pay for the
    whole depth. On a GPU a small batch costs launches, not arithmetic, so fewer, fuller
    chunks win and layers share them.
    """
    by_layer: dict[str, list[Group]] = {}
    for group in groups:
        by_layer.setdefault(group.unit.layer if split_layers else "", []).append(group)
    chunks: list[list[Group]] = []
    for layer_groups in by_layer.values():
        chunks.append([])
        used = 0
        for group in layer_groups:
            if chunks[-1] and used + group.size > batch_size:
                chunks.append([])
                used = 0
            chunks[-1].append(group)
            used += group.size
    return chunks


def centre_crop(images: torch.Tensor, crop: int | None) -> torch.Tensor:
    """The central `crop` x `crop` pixels of (n, 3, H, W) images (all of them when None)."""
    if crop is None or crop >= images.shape[-1]:
        return images
    top = (images.shape[-2] - crop) // 2
    left = (images.shape[-1] - crop) // 2
    return images[..., top : top + crop, left : left + crop]


def _gradient_settled(norms: list[torch.Tensor], window: int, ratio: float) -> bool:
    """IMI's stop, as we read it: for every group, the mean gradient norm over the window
    before divided by the mean over the last window is at most `ratio` (no longer falling)."""
    recent = torch.stack(norms[-window:]).mean(0)
    before = torch.stack(norms[-2 * window : -window]).mean(0)
    return bool((before <= ratio * recent.clamp_min(1e-12)).all())


def _plateaued(history: list[torch.Tensor], window: int, tolerance: float) -> bool:
    """True when every group's mean objective over the last window barely beat the one before."""
    recent = torch.stack(history[-window:]).mean(0)
    before = torch.stack(history[-2 * window : -window]).mean(0)
    gain = recent - before
    return bool((gain <= tolerance * before.abs().clamp_min(1e-6)).all())


def measure_units(
    model: LoadedModel, images: torch.Tensor, units: Sequence[UnitRef], size: int | None = None
) -> np.ndarray:
    """Activation of units[i] on images[i] (images in [0, 1], any size), resized to `size`.

    `size` defaults to the model's input size. Visualizations are measured at the size
    they were rendered for: the same pattern at another scale can excite a unit ten times
    less (measured on Lite0 _blocks.4), so measuring elsewhere would judge the validity
    rule on an image the optimisation never saw.
    """
    size = size or model.preprocessing.image_size
    normalize = model.normalizer()
    with torch.inference_mode(), LayerCapture(model, {u.layer for u in units}) as capture:
        x = F.interpolate(
            images.to(model.device),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        outputs = capture.run(normalize(x.clamp(0, 1)))
    return np.array(
        [float(outputs[u.layer][i, u.index]) for i, u in enumerate(units)], dtype=np.float32
    )


def render_visualizations(
    model: LoadedModel,
    units: Sequence[UnitRef],
    config: FVConfig,
    seed: int = 0,
    directions: Sequence[str] = ("max", "min"),
    steps: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    diversity_weights: Mapping[tuple[UnitRef, str], float] | None = None,
    render_model: LoadedModel | None = None,
    chunk_cache: ChunkCache | None = None,
) -> list[Visualization]:
    """Max and/or min visualizations of `units`: per unit and direction 1 plain + n_diverse.

    `render_model`: the network to optimise through, from `fold_for_rendering(model,
    layers)`; folded here when not given (callers that render repeatedly fold once).

    `diversity_weights` (the diversity search): render only these (unit, direction) groups,
    each with its own alpha. Entries keep their numbers in the full units x directions plan,
    and every random draw is keyed by entry, so a group follows the same trajectory
    whichever other groups share the call.

    `chunk_cache` (generation jobs): finished chunks are kept and reused, so a job resumed
    after its worker died renders only what was left. `progress("visualizations", done,
    total)` counts group-steps, so it moves during a chunk, not only between chunks.
    """
    groups = plan_groups(units, config.n_diverse, directions, config.diversity_weight)
    n_entries = sum(g.size for g in groups)
    if diversity_weights is not None:
        unknown = set(diversity_weights) - {(g.unit, g.direction) for g in groups}
        if unknown:
            raise AppError(f"diversity weights for groups not in this render: {sorted(unknown)}")
        groups = [
            dataclasses.replace(g, alpha=diversity_weights[(g.unit, g.direction)])
            for g in groups
            if (g.unit, g.direction) in diversity_weights
        ]
    max_steps = steps or config.steps
    if render_model is None:
        render_model = fold_for_rendering(model, list(dict.fromkeys(u.layer for u in units)))
    split_layers = model.device.type != "cuda"
    results: list[Visualization] = []
    batch_size = config.batch_size
    pending = _chunks(groups, batch_size, split_layers)
    total = len(groups) * max_steps
    executor = _CHUNK_EXECUTOR.get()
    if executor is not None:
        pending = _render_elsewhere(
            executor, render_model, model, pending, results, chunk_cache, progress, total,
            (config, seed, max_steps, n_entries),
        )  # fmt: skip
    while pending:
        chunk = pending.pop(0)
        key = (model, chunk, config, seed, max_steps, n_entries)
        cached = chunk_cache.get(key) if chunk_cache is not None else None
        if cached is not None:
            results.extend(cached)
            if progress is not None:
                progress("visualizations", len(results) * max_steps, total)
            continue

        def on_step(step: int, chunk: list[Group] = chunk) -> None:
            if progress is not None:
                progress("visualizations", (len(results) * max_steps + len(chunk) * step), total)

        try:
            rendered = _render_chunk(
                render_model, model, chunk, config, seed, max_steps, n_entries, on_step
            )
        except torch.OutOfMemoryError:
            entries = sum(g.size for g in chunk)
            if len(chunk) == 1:
                raise AppError(
                    f"out of memory rendering {entries} images of one unit; "
                    "lower fv.n_diverse or fv.image_size"
                ) from None
            batch_size = max(1, entries // 2)
            warnings.warn(f"out of memory: FV batch size halved to {batch_size}", stacklevel=2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            pending = _chunks(chunk, batch_size, split_layers) + pending
            continue
        if chunk_cache is not None:
            chunk_cache.put(key, rendered)
        results.extend(rendered)
        if progress is not None:
            progress("visualizations", len(results) * max_steps, total)
    order = {(g.unit, g.direction): i for i, g in enumerate(groups)}
    return sorted(results, key=lambda v: order[(v.unit, v.direction)])


def _render_elsewhere(
    executor: ChunkExecutor,
    render_model: LoadedModel,
    model: LoadedModel,
    pending: list[list[Group]],
    results: list[Visualization],
    chunk_cache: ChunkCache | None,
    progress: Callable[[str, int, int], None] | None,
    total: int,
    fixed: tuple[FVConfig, int, int, int],
) -> list[list[Group]]:
    """Render the uncached chunks through `executor` all at once; cache and keep them.
    Returns the chunks left for the local loop (none: the executor renders them all)."""
    max_steps = fixed[2]
    todo = []
    for chunk in pending:
        cached = chunk_cache.get((model, chunk, *fixed)) if chunk_cache is not None else None
        if cached is None:
            todo.append(chunk)
        else:
            results.extend(cached)
    if not todo:
        return []
    groups_done = len(results)

    def done(index: int, visualizations: list[Visualization]) -> None:
        nonlocal groups_done
        if chunk_cache is not None:
            chunk_cache.put((model, todo[index], *fixed), visualizations)
        groups_done += len(todo[index])
        if progress is not None:
            progress("visualizations", groups_done * max_steps, total)

    if progress is not None:  # the step is visualizations from now, not at the first chunk
        progress("visualizations", groups_done * max_steps, total)
    rendered = executor.render_chunks(
        render_model, model, [(chunk, *fixed) for chunk in todo], done
    )
    for visualizations in rendered:
        results.extend(visualizations)
    if progress is not None:
        progress("visualizations", len(results) * max_steps, total)
    return []


# Transform draws are made on the host (seeded per step) a block of steps at a time, and
# moved to the device in one copy: no host-to-device copy inside a step.
_DRAW_BLOCK = 64
# Steps between progress reports inside a chunk (a report costs a callback, not a sync).
_PROGRESS_EVERY = 8
# Eager steps before a CUDA graph is captured (PyTorch's recipe warms up on a side stream).
_GRAPH_WARMUP_STEPS = 3


def _draw_block(
    config: FVConfig, n_entries: int, seed: int, first_step: int, count: int, entries: list[int]
) -> torch.Tensor:
    """Draws of steps first_step.. for `entries`, packed as (count, len(entries), 6)."""
    rows = []
    for step in range(first_step, first_step + count):
        d = draw_transforms(config, n_entries, seed, step)
        rows.append(
            torch.cat(
                [
                    d.shift1[entries],
                    d.scale[entries, None],
                    d.angle[entries, None],
                    d.shift2[entries],
                ],
                dim=1,
            )
        )
    return torch.stack(rows)


def _unpack_draws(packed: torch.Tensor) -> TransformDraws:
    return TransformDraws(packed[:, 0:2], packed[:, 2], packed[:, 3], packed[:, 4:6])


class _ChunkOptimisation:
    """One chunk's images, optimizer and optimisation step.

    The step reads its transform draws from one static tensor and returns the groups' mean
    objectives, so on CUDA the whole step (forward, backward, Adam) can be captured once
    as a CUDA graph and replayed: a step then costs one launch instead of hundreds, which
    is what bounds small batches on a GPU.
    """

    def __init__(
        self,
        model: LoadedModel,
        chunk: list[Group],
        config: FVConfig,
        seed: int,
        capture: LayerCapture,
        graphable: bool,
    ):
        device = model.device
        self.chunk = chunk
        self.config = config
        self.capture = capture
        self.render_size = config.render_size or model.preprocessing.image_size
        self.entries = [g.first_entry + i for g in chunk for i in range(g.size)]
        spectrum = torch.stack(
            [
                FourierImages.initial_spectrum(config.image_size, seed * 1_000_003 + e)
                for e in self.entries
            ]
        )
        self.param = FourierImages(spectrum, config.image_size).to(device)
        self.optimizer = torch.optim.Adam(
            self.param.parameters(), lr=config.lr, capturable=graphable
        )
        self.normalize = model.normalizer()
        self.entry_units = [g.unit for g in chunk for _ in range(g.size)]
        self.signs = torch.tensor(
            [DIRECTIONS[g.direction] for g in chunk for _ in range(g.size)], device=device
        )
        rows: dict[str, list[int]] = {}
        for i, unit in enumerate(self.entry_units):
            rows.setdefault(unit.layer, []).append(i)
        self.row_index = {k: torch.tensor(v, device=device) for k, v in rows.items()}
        self.col_index = {
            k: torch.tensor([self.entry_units[i].index for i in v], device=device)
            for k, v in rows.items()
        }
        self.starts = [sum(g.size for g in chunk[:i]) for i in range(len(chunk))]
        self.draws = torch.zeros(len(self.entries), 6, device=device)
        self.track_gradients = config.early_stop and config.stop_rule == "gradient_norm"

    def step(self) -> torch.Tensor:
        """One eager step with the draws in `self.draws`; returns the groups' mean objectives
        (followed by their mean gradient norms when the stop rule needs them)."""
        self.optimizer.zero_grad(set_to_none=True)
        return self._forward_backward_update()

    def _forward_backward_update(self) -> torch.Tensor:
        x = transform_batch(
            self.param(),
            _unpack_draws(self.draws),
            self.config.pad,
            self.render_size,
            self.config.crop_size,
        )
        outputs = self.capture.run(self.normalize(x))
        score = torch.zeros(len(self.entries), device=x.device)
        for layer, out in outputs.items():
            acts = reduce_units(out)[self.row_index[layer], self.col_index[layer]]
            score = score.index_put((self.row_index[layer],), acts)
        score = score * self.signs
        loss = -score.sum()
        for group, start in zip(self.chunk, self.starts, strict=True):
            if group.size > 2 and group.alpha > 0:
                feats = outputs[group.unit.layer][start + 1 : start + group.size]
                loss = loss + group.alpha * diversity_penalty(feats)
        loss.backward()
        norms = None
        if self.track_gradients:
            per_entry = self.param.spectrum.grad.flatten(1).norm(dim=1)
            norms = [per_entry[s : s + g.size].mean() for g, s in zip(self.chunk, self.starts)]
        self.optimizer.step()
        means = [score[s : s + g.size].mean() for g, s in zip(self.chunk, self.starts, strict=True)]
        return torch.stack(means + (norms or [])).detach()

    def capture_graph(self) -> Callable[[], torch.Tensor] | None:
        """The step as a replayable CUDA graph, or None (with a warning) if capture fails.

        Capture runs nothing, so a failed capture leaves the images and Adam's state as
        they were and the caller goes on eagerly.
        """
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph):
                static_means = self._forward_backward_update()
        except RuntimeError as exc:  # capture refused an op: the eager step is always right
            warnings.warn(f"CUDA graph capture failed ({exc}); rendering eagerly", stacklevel=3)
            torch.cuda.synchronize()
            return None

        def replay() -> torch.Tensor:
            graph.replay()
            return static_means.clone()

        return replay


@contextlib.contextmanager
def _graph_setup_warnings_muted() -> Iterator[None]:
    """Mute autograd's stream-mismatch warning while warming up and capturing on side streams.

    The images live on the default stream while PyTorch's recipe runs warm-up and capture
    on side streams; autograd then warns that gradient accumulation crosses streams and
    synchronizes them itself. That is the recipe working as documented, not a fault: the
    replayed render matches the eager one (tests/test_fv_cuda.py).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream")
        yield


def _should_stop(history: list[torch.Tensor], n_groups: int, config: FVConfig) -> bool:
    window = config.plateau_window
    if config.stop_rule == "gradient_norm":
        norms = [h[n_groups:] for h in history[-2 * window :]]
        return _gradient_settled(norms, window, config.gradient_ratio)
    objectives = [h[:n_groups] for h in history[-2 * window :]]
    return _plateaued(objectives, window, config.plateau_tolerance)


def _use_cuda_graphs(model: LoadedModel, config: FVConfig, max_steps: int) -> bool:
    return (
        config.cuda_graphs and model.device.type == "cuda" and max_steps > 2 * _GRAPH_WARMUP_STEPS
    )


def _render_chunk(
    model: LoadedModel,
    measure_model: LoadedModel,
    chunk: list[Group],
    config: FVConfig,
    seed: int,
    max_steps: int,
    n_entries: int,
    on_step: Callable[[int], None] | None = None,
) -> list[Visualization]:
    """Optimise one batch of groups; transform draws are made for all `n_entries` each step.

    `model` renders (it may be the folded copy); `measure_model` is the model the natural
    exemplars were measured with, so the validity rule compares like with like. On CPU
    both run with `fv.cpu_threads` torch threads (cpu_threads.py).
    """
    threads = config.cpu_threads if model.device.type == "cpu" else None
    with torch_threads(threads):
        return _optimise_chunk(
            model, measure_model, chunk, config, seed, max_steps, n_entries, on_step
        )


def _optimise_chunk(
    model: LoadedModel,
    measure_model: LoadedModel,
    chunk: list[Group],
    config: FVConfig,
    seed: int,
    max_steps: int,
    n_entries: int,
    on_step: Callable[[int], None] | None,
) -> list[Visualization]:
    graphs = _use_cuda_graphs(model, config, max_steps)
    history: list[torch.Tensor] = []
    step = 0
    with LayerCapture(model, {g.unit.layer for g in chunk}, reduce=False) as capture:
        opt = _ChunkOptimisation(model, chunk, config, seed, capture, graphable=graphs)
        run_step: Callable[[], torch.Tensor] = opt.step
        side_stream = torch.cuda.Stream() if graphs else None
        block = torch.empty(0)
        for step in range(1, max_steps + 1):
            offset = (step - 1) % _DRAW_BLOCK
            if offset == 0:
                count = min(_DRAW_BLOCK, max_steps - step + 1)
                block = _draw_block(config, n_entries, seed, step, count, opt.entries)
                block = block.to(model.device)
            opt.draws.copy_(block[offset])
            if side_stream is not None and step <= _GRAPH_WARMUP_STEPS:
                # PyTorch's recipe: warm up on a side stream before capturing.
                side_stream.wait_stream(torch.cuda.current_stream())
                with _graph_setup_warnings_muted(), torch.cuda.stream(side_stream):
                    history.append(opt.step())
                torch.cuda.current_stream().wait_stream(side_stream)
                if step == _GRAPH_WARMUP_STEPS:
                    with _graph_setup_warnings_muted():
                        run_step = opt.capture_graph() or opt.step
                    side_stream = None
            else:
                history.append(run_step())
            if on_step is not None and step % _PROGRESS_EVERY == 0:
                on_step(step)
            window = config.plateau_window
            if (
                config.early_stop
                and step >= config.plateau_min_steps
                and step % window == 0
                and step >= 2 * window
                and _should_stop(history, len(chunk), config)
            ):
                break
    with torch.no_grad():
        final = centre_crop(opt.param().detach(), config.crop_size)
    activations = measure_units(measure_model, final, opt.entry_units, opt.render_size)
    curves = torch.stack(history)[:, : len(chunk)].cpu().numpy()
    pixels = final.permute(0, 2, 3, 1).cpu().numpy()
    return [
        Visualization(
            unit=g.unit,
            direction=g.direction,
            images=pixels[s : s + g.size],
            activations=activations[s : s + g.size],
            history=curves[:, i],
            steps=step,
        )
        for i, (g, s) in enumerate(zip(chunk, opt.starts, strict=True))
    ]
