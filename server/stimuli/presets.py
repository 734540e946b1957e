"""Named feature-visualization presets: the original studies' settings as data.

`generation.fv.preset` picks one; every field a study sets explicitly overrides the
preset's value (nested sections such as `diversity_search` merge key by key). The values
here are the fidelity table in `docs/fidelity.md`, and `tests/test_presets.py` checks that
the two agree, so a change to one without the other fails.

- `fast`: the laptop defaults psychinterp had before presets (lucid's standard transforms
  on a 224 px canvas, a 512-step budget with an objective-plateau stop, fixed alpha 1).
- `imi`: Zimmermann et al. 2023 (brendel-group/imi): 256 px canvas cropped to 224, jitter
  16, scale 0.95-1.05, rotate +-5 deg, jitter 8, Adam lr 0.05, gradient-norm stop (>= 2500
  steps, window 2000, ratio <= 1.1, at most 20000), alpha search 1, 10, ... 1e5 then 7
  bisections, non-diverse fallback when no alpha passes, best of 9 non-diverse runs.
- `borowski`: Borowski et al. 2021 (bethgelab/testing_visualizations): the same canvas and
  transforms, a fixed 2560 steps at lr 0.05 and a fixed diversity weight of 1e2.
"""

from __future__ import annotations

from typing import Any, Literal

FVPresetName = Literal["imi", "borowski", "fast"]

# lucid's standard transforms (lucent.optvis.transform.standard_transforms).
LUCID_SCALES = [1 + (i - 5) / 50.0 for i in range(11)]
LUCID_ANGLES = [float(a) for a in range(-10, 11)] + [0.0] * 5
# IMI's transforms: scale 0.95 ... 1.05 in steps of 0.01, rotation -5 ... 5 degrees.
IMI_SCALES = [round(0.95 + i / 100.0, 2) for i in range(11)]
IMI_ANGLES = [float(a) for a in range(-5, 6)]

_PAPER_CANVAS: dict[str, Any] = {
    "image_size": 256,
    "crop_size": 224,
    "pad": 0,
    "jitter": 16,
    "scales": IMI_SCALES,
    "angles": IMI_ANGLES,
    "jitter_after": 8,
    "lr": 0.05,
    "n_diverse": 8,
}

FV_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {
        "steps": 512,
        "lr": 0.05,
        "image_size": 224,
        "crop_size": None,
        "pad": 12,
        "jitter": 8,
        "scales": LUCID_SCALES,
        "angles": LUCID_ANGLES,
        "jitter_after": 4,
        "n_diverse": 8,
        "diversity_weight": 1.0,
        "diversity_search": {"enabled": False, "start": 1.0, "factor": 10.0},
        "early_stop": True,
        "stop_rule": "objective_plateau",
        "plateau_min_steps": 256,
        "plateau_window": 64,
        "plateau_tolerance": 0.01,
        "non_diverse_runs": 1,
        "no_alpha_fallback": "keep_diverse",
    },
    "imi": {
        **_PAPER_CANVAS,
        "steps": 20_000,
        "diversity_weight": 1.0,
        "diversity_search": {
            "enabled": True,
            "start": 1.0,
            "factor": 10.0,
            "max_increases": 5,  # 1, 10, ..., 1e5: IMI stops at 1e5
            "bisect_steps": 7,
        },
        "early_stop": True,
        "stop_rule": "gradient_norm",
        "plateau_min_steps": 2500,
        "plateau_window": 2000,
        "gradient_ratio": 1.1,
        "non_diverse_runs": 9,
        "no_alpha_fallback": "non_diverse",
    },
    "borowski": {
        **_PAPER_CANVAS,
        "steps": 2560,
        "diversity_weight": 100.0,
        "diversity_search": {"enabled": False},
        "early_stop": False,
        "non_diverse_runs": 1,
        "no_alpha_fallback": "keep_diverse",
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_fv_preset(data: Any) -> Any:
    """The preset's values under the fields the study set itself (used before validation).

    An unknown preset name is left for the `preset` field's own validation, which lists
    the valid names (and the study loader adds file:line).
    """
    if not isinstance(data, dict):
        return data
    name = data.get("preset", "fast")
    preset = FV_PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        return data
    return _merge(preset, data)
