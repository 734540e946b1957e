"""Figures of the papers from score tables (matplotlib, no pyplot state: safe in servers).

Each function takes the tables `scores()` returns and gives back a Figure; `save_figure`
writes PNG or SVG by the file's suffix.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from server.errors import AppError


def _errors(table: pd.DataFrame) -> np.ndarray:
    # A BCa interval (score imi) need not contain the point estimate: bars start at it.
    low = (table["accuracy"] - table["ci_low"]).clip(lower=0.0)
    high = (table["ci_high"] - table["accuracy"]).clip(lower=0.0)
    return np.vstack([low, high])


def _chance_line(ax, chance: float, lowest: float = 1.0) -> None:
    """Chance as a dashed line; the axis reaches below the lowest CI so no point is cut off."""
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    floor = min(chance, 0.4, lowest if np.isfinite(lowest) else 1.0)
    ax.set_ylim(max(0.0, floor - 0.05), 1.02)
    ax.set_ylabel("proportion correct")


def plot_by_condition(table: pd.DataFrame, chance: float = 0.5) -> Figure:
    """Accuracy per condition with its 95% CI."""
    figure = Figure(figsize=(4.5, 3.5), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(table))
    ax.bar(positions, table["accuracy"], color="#8fb3d9", yerr=_errors(table), capsize=4)
    ax.set_xticks(positions, table["condition"])
    _chance_line(ax, chance)
    ax.set_ylim(0.0, 1.02)  # bars start at 0: a bar's height is its accuracy
    ax.set_title("Accuracy by condition")
    return figure


def plot_by_model(table: pd.DataFrame, chance: float = 0.5) -> Figure:
    """The IMI figure: interpretability (accuracy) per model, one marker per condition."""
    figure = Figure(
        figsize=(max(4.5, 0.8 * table["model"].nunique() + 2), 3.8), layout="constrained"
    )
    ax = figure.subplots()
    models = list(dict.fromkeys(table["model"]))
    conditions = sorted(table["condition"].unique())
    width = 0.8 / max(1, len(conditions))
    for i, condition in enumerate(conditions):
        rows = table[table["condition"] == condition].set_index("model").reindex(models)
        x = np.arange(len(models)) + (i - (len(conditions) - 1) / 2) * width
        ax.errorbar(x, rows["accuracy"], yerr=_errors(rows), fmt="o", capsize=3, label=condition)
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    _chance_line(ax, chance, table["ci_low"].min())
    ax.legend(fontsize="small")
    ax.set_title("Interpretability by model")
    return figure


def _natural_key(name: str) -> list:
    """`blocks.10` after `blocks.2`: layer names sort by their numbers, as depth does."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def layer_depths(frame: pd.DataFrame) -> pd.Series:
    """Relative depth (0..1) per (model, layer): stored depths, else natural name order."""
    if "layer_depth" in frame.columns and frame["layer_depth"].notna().any():
        return frame.groupby(["model", "layer"])["layer_depth"].mean()
    depths = {}
    for model, layers in frame.groupby("model")["layer"].unique().items():
        ordered = sorted(layers, key=_natural_key)
        for i, layer in enumerate(ordered):
            depths[model, layer] = i / max(1, len(ordered) - 1)
    return pd.Series(depths)


def plot_by_layer(table: pd.DataFrame, depths: pd.Series, chance: float = 0.5) -> Figure:
    """Accuracy against layer depth, one line per model, one panel per condition."""
    conditions = sorted(table["condition"].unique())
    figure = Figure(figsize=(4.2 * len(conditions), 3.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(conditions), sharey=True))
    table = table.assign(
        depth=depths.reindex(pd.MultiIndex.from_frame(table[["model", "layer"]])).to_numpy()
    )
    for ax, condition in zip(axes, conditions, strict=True):
        for model, rows in table[table["condition"] == condition].groupby("model", sort=False):
            rows = rows.sort_values("depth")
            ax.errorbar(
                rows["depth"],
                rows["accuracy"],
                yerr=_errors(rows),
                marker="o",
                capsize=2,
                label=model,
            )
        _chance_line(ax, chance, table["ci_low"].min())
        ax.set_xlabel("relative layer depth")
        ax.set_title(condition)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right", fontsize="small")
    return figure


def plot_unit_scatter(table: pd.DataFrame, x: str = "natural", y: str = "synthetic") -> Figure:
    """Per-unit accuracy in condition `x` against condition `y` (units that have both)."""
    wide = table.pivot_table(
        index=["model", "layer", "unit"], columns="condition", values="accuracy"
    )
    missing = [c for c in (x, y) if c not in wide.columns]
    if missing:
        present = ", ".join(map(str, wide.columns))
        raise AppError(f"no per-unit scores for condition {missing[0]!r}; conditions: {present}")
    wide = wide[[x, y]].dropna()
    figure = Figure(figsize=(4, 4), layout="constrained")
    ax = figure.subplots()
    for model, rows in wide.groupby(level="model"):
        ax.scatter(rows[x], rows[y], s=12, alpha=0.6, label=model or None)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{x} accuracy")
    ax.set_ylabel(f"{y} accuracy")
    ax.set_title(f"Per unit: {x} vs {y} ({len(wide)} units)")
    if wide.index.get_level_values("model").nunique() > 1:
        ax.legend(fontsize="small")
    return figure


def plot_mis_by_depth(layers: pd.DataFrame, chance: float = 0.5) -> Figure:
    """issue 22, the IMI figure for machine scores: mean MIS per layer against relative layer
    depth, one line per model, 95% CIs over units (table from `analysis.machine.layer_summary`).
    """
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    ax = figure.subplots()
    for model, rows in layers.groupby("model", sort=False):
        rows = rows.sort_values("layer_depth")
        errors = np.vstack([rows["mis"] - rows["ci_low"], rows["ci_high"] - rows["mis"]])
        ax.errorbar(
            rows["layer_depth"], rows["mis"], yerr=errors, marker="o", capsize=2, label=model
        )
    _chance_line(ax, chance)
    ax.set_ylabel("machine interpretability score")
    ax.set_xlabel("relative layer depth")
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize="small")
    ax.set_title("Machine interpretability by layer depth")
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """PNG or SVG, chosen by the suffix."""
    path = Path(path)
    if path.suffix.lower() not in {".png", ".svg"}:
        raise AppError(f"cannot save a figure as {path.suffix or 'no suffix'}: use .png or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
