"""The analysis package on small tables with hand-computed answers, and on simulations
with known accuracy (CI coverage)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import analysis
from analysis.bootstrap import hierarchical_bootstrap
from analysis.columns import parse_bool, standardise
from analysis.exclusions import (
    ExclusionRules,
    apply_exclusions,
    rules_from_options,
    rules_from_study_config,
)
from analysis.synthetic import synthetic_responses
from server.cli import app
from server.errors import AppError

runner = CliRunner()


def tidy(rows: list[tuple], columns: str = "participant unit condition correct") -> pd.DataFrame:
    return standardise(pd.DataFrame(rows, columns=columns.split()))


# --- parsing and loading -------------------------------------------------------------------


def test_parse_bool_reads_export_spellings_and_names_bad_column():
    values = pd.Series(["True", "false", "1", "0", " TRUE", "f", 1, 0])
    assert parse_bool(values, "correct").tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    with pytest.raises(AppError, match=r"column 'hit' must hold booleans.*'maybe'"):
        parse_bool(pd.Series(["true", "maybe"]), "hit")


def _export_like_csv(path) -> None:
    """Shaped like a real jsPsych/IMI export: pandas index column, string booleans,
    practice/catch/repeated rows mixed in, confidence sometimes missing."""
    frame = pd.DataFrame(
        {
            "worker": ["w1"] * 5 + ["w2"] * 5,
            "cond": ["natural", "natural", "synthetic", "natural", "natural"] * 2,
            "is_correct": ["True", "false", "True", "1", "0", "False", "true", "0", "1", "True"],
            "is_practice": ["False", "False", "False", "True", "False"] * 2,
            "is_repeat": ["False", "False", "False", "False", "True"] * 2,
            "conf": [3, None, 2, 1, 1, 2, 2, None, 3, 1],
            "unit_name": ["u1", "u2", "u1", "u9", "u1"] * 2,
        }
    )
    frame.to_csv(path)  # writes the unnamed index column too


def test_load_responses_export_shaped_file(tmp_path):
    path = tmp_path / "export.csv"
    _export_like_csv(path)
    frame = analysis.load_responses(
        path,
        columns={
            "participant": "worker",
            "condition": "cond",
            "correct": "is_correct",
            "confidence": "conf",
            "unit": "unit_name",
        },
        where=["is_practice=False", "is_repeat=False"],
    )
    assert len(frame) == 6
    assert frame["correct"].tolist() == [True, False, True, False, True, False]
    assert frame["confidence"].isna().sum() == 2
    assert list(frame.columns[:11]) == list(analysis.columns.STANDARD_COLUMNS)
    assert not any(str(c).startswith("Unnamed") for c in frame.columns)


def test_missing_column_names_it_and_lists_present(tmp_path):
    path = tmp_path / "export.csv"
    _export_like_csv(path)
    with pytest.raises(AppError) as error:
        analysis.load_responses(path, columns={"participant": "worker_id", "condition": "cond"})
    assert "'worker_id'" in error.value.message
    assert "columns present: worker, cond, is_correct" in error.value.message


def test_cli_bad_input_is_one_line_exit_1(tmp_path):
    path = tmp_path / "export.csv"
    _export_like_csv(path)
    missing = runner.invoke(
        app, ["analyze", "--responses", str(path), "--columns", "participant=worker,condition=c"]
    )
    assert missing.exit_code == 1
    assert "no column 'c'" in missing.output and "Traceback" not in missing.output
    empty = runner.invoke(
        app,
        [
            "analyze",
            "--responses",
            str(path),
            "--format",
            "json",
            "--columns",
            "participant=worker,condition=cond,correct=is_correct",
            "--where",
            "cond=none",
        ],
    )
    assert empty.exit_code == 1
    assert "no responses left after keeping only rows with cond=none" in empty.output


# --- scores --------------------------------------------------------------------------------


def test_accuracy_is_mean_of_participant_proportions():
    # p1: 1/1 natural, 1/2 synthetic; p2: 1/4 natural, 2/2 synthetic.
    frame = tidy(
        [
            ("p1", "u1", "natural", True),
            ("p1", "u1", "synthetic", True),
            ("p1", "u2", "synthetic", False),
            ("p2", "u1", "natural", True),
            ("p2", "u2", "natural", False),
            ("p2", "u3", "natural", False),
            ("p2", "u4", "natural", False),
            ("p2", "u1", "synthetic", True),
            ("p2", "u2", "synthetic", True),
        ]
    )
    table = analysis.score_table(frame, ["condition"], n_resamples=200).set_index("condition")
    assert table.loc["natural", "accuracy"] == pytest.approx((1.0 + 0.25) / 2)  # pooled: 0.4
    assert table.loc["synthetic", "accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert table.loc["natural", "sem"] == pytest.approx(np.std([1.0, 0.25], ddof=1) / np.sqrt(2))
    assert table.loc["natural", "n_participants"] == 2
    assert table.loc["natural", "n_responses"] == 5
    assert (table["ci_low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["ci_high"]).all()


def test_bootstrap_is_seeded():
    frame = synthetic_responses(20, 2, 30, 600, seed=1)
    first = hierarchical_bootstrap(frame, ["condition"], 100, seed=5).resamples
    again = hierarchical_bootstrap(frame, ["condition"], 100, seed=5).resamples
    other = hierarchical_bootstrap(frame, ["condition"], 100, seed=6).resamples
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def _naive_hierarchical(frame: pd.DataFrame, n_resamples: int, seed: int) -> np.ndarray:
    """The definition, one resample at a time: participants, then units within each."""
    rng = np.random.default_rng(seed)
    cells = frame.groupby(["participant", "unit"])["correct"].agg(["sum", "count"])
    participants = [
        (g["sum"].to_numpy(), g["count"].to_numpy()) for _, g in cells.groupby("participant")
    ]
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        props = []
        for i in rng.integers(0, len(participants), len(participants)):
            k, n = participants[i]
            pick = rng.integers(0, len(k), len(k))
            props.append(k[pick].sum() / n[pick].sum())
        out[b] = np.mean(props)
    return out


@pytest.mark.parametrize("repeats", ["once", "twice", "mixed"])
def test_vectorised_bootstrap_matches_definition(repeats):
    """Each path (one answer per unit, r answers per unit, mixed counts) resamples like the
    one-at-a-time definition: same mean and spread."""
    rng = np.random.default_rng(3)
    rows = []
    for p in range(12):
        ability = rng.normal(0, 1)
        for u in range(6):
            n = {"once": 1, "twice": 2, "mixed": 1 + (u % 3 == 0) * (p % 2 + 1)}[repeats]
            for _ in range(n):
                rows.append(
                    (f"p{p}", f"u{u}", "x", bool(rng.random() < 1 / (1 + np.exp(-ability - 0.5))))
                )
    frame = tidy(rows)
    fast = hierarchical_bootstrap(frame, ["condition"], 4000, seed=1).resamples[0]
    slow = _naive_hierarchical(frame, 2000, seed=2)
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.006)
    assert fast.std() == pytest.approx(slow.std(), rel=0.1)


def _simulate(seed: int, n_participants: int = 25, n_units: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    participant = np.repeat(np.arange(n_participants), n_units)
    logit = (
        1.0 + rng.normal(0, 0.6, n_participants)[participant] + rng.normal(0, 0.6, len(participant))
    )
    return pd.DataFrame(
        {
            "participant": participant.astype(str),
            "unit": np.arange(len(participant)).astype(str),
            "condition": "x",
            "correct": rng.random(len(participant)) < 1 / (1 + np.exp(-logit)),
        }
    )


def test_ci_coverage_on_simulated_data_with_known_accuracy():
    """Participants and units drawn from populations with a known mean accuracy; each
    simulated study is one group of a single (vectorised) bootstrap call."""
    z = np.random.default_rng(99).normal(0, 1, (2, 1_000_000))
    truth = np.mean(1 / (1 + np.exp(-(1.0 + 0.6 * z[0] + 0.6 * z[1]))))
    n_sims = 300
    studies = pd.concat([_simulate(seed).assign(condition=f"sim{seed}") for seed in range(n_sims)])
    low, high = hierarchical_bootstrap(studies, ["condition"], 1000, seed=1).interval()
    coverage = np.mean((low <= truth) & (truth <= high))
    # Resampling both levels is slightly conservative (~97% measured).
    assert 0.92 <= coverage <= 0.995


def test_per_unit_ci_coverage():
    """Per unit, only participants are resampled: coverage should be close to 95%."""
    n_units, n_participants, truth = 400, 40, 0.7
    correct = np.random.default_rng(7).random((n_units, n_participants)) < truth
    frame = tidy(
        [
            (f"p{p}", f"u{u}", "x", correct[u, p])
            for u in range(n_units)
            for p in range(n_participants)
        ]
    )
    low, high = hierarchical_bootstrap(frame, ["unit"], 1000, seed=2).interval()
    coverage = np.mean((low <= truth) & (truth <= high))
    assert 0.91 <= coverage <= 0.98


# --- exclusions ----------------------------------------------------------------------------


def test_exclusion_rules_with_counts():
    rows = []

    def add(p, kind, correct, n=1, choice="a", rt=2000.0, duration=600.0, trial="t"):
        for i in range(n):
            rows.append(
                {
                    "participant": p,
                    "unit": f"u{i}",
                    "condition": "natural",
                    "trial_kind": kind,
                    "correct": correct,
                    "choice": choice,
                    "rt_ms": rt,
                    "duration_s": duration,
                    "trial": f"{trial}{i}",
                    "excluded": False,
                }
            )

    for p in ("good", "bad_catch", "too_long", "sided", "practised", "manual"):
        add(p, "main", True, 5, "a")
        add(p, "main", False, 5, "a" if p == "sided" else "b")
        add(p, "catch", p != "bad_catch", 5)
        add(p, "practice", True, 2)
    add("practised", "practice", True, 2)  # the practice block done again: 2 attempts
    frame = standardise(pd.DataFrame(rows))
    frame.loc[frame["participant"] == "too_long", "duration_s"] = 3000.0
    frame.loc[frame["participant"] == "manual", "excluded"] = True
    rules = ExclusionRules(max_practice_attempts=1, min_rt_ms=100.0)
    frame.loc[(frame["participant"] == "good") & (frame["unit"] == "u0"), "rt_ms"] = 50.0
    kept, report = apply_exclusions(frame, rules)
    assert set(kept["participant"]) == {"good"}
    assert report.participants == {
        "bad_catch": ["min_catch_accuracy"],
        "too_long": ["total_time_s"],
        "sided": ["min_choices_per_row"],
        "practised": ["max_practice_attempts"],
        "manual": ["manual"],
    }
    assert {k: v.get("participants", v.get("responses")) for k, v in report.rules.items()} == {
        "manual": 1,
        "min_catch_accuracy": 1,
        "total_time_s": 1,
        "min_instruction_s": 0,  # no instruction_s column: reported as not applied
        "max_practice_attempts": 1,
        "min_choices_per_row": 1,
        "min_rt_ms": 4,  # good's u0 rows: two main, one catch, one practice
    }
    assert report.responses_kept == len(kept) == 17 - 4
    assert report.as_dict()["participants_excluded"] == 5


def test_rules_from_options():
    rules = rules_from_options(["min_catch_accuracy=0.6", "min-choices-per-side=off"])
    assert rules.min_catch_accuracy == 0.6 and rules.min_choices_per_side is None
    assert rules_from_options([], no_exclusions=True).min_catch_accuracy is None
    with pytest.raises(AppError, match="NAME one of"):
        rules_from_options(["catch=1"])


def test_everyone_excluded_says_which_rules_did_it():
    frame = standardise(
        pd.DataFrame(
            {
                "participant": ["p1", "p1", "p2", "p2"],
                "unit": ["u1", "u2", "u1", "u2"],
                "condition": "natural",
                "trial_kind": ["main", "catch", "main", "catch"],
                "correct": [True, False, True, False],
                "duration_s": 600.0,
            }
        )
    )
    with pytest.raises(AppError, match=r"every participant \(2\) was excluded.*min_catch_accuracy"):
        analysis.analyze(frame, n_resamples=50, glmm=False)
    kept = analysis.analyze(
        frame, rules=ExclusionRules(min_catch_accuracy=None), n_resamples=50, glmm=False
    )
    assert kept.tables["by_condition"]["accuracy"].tolist() == [1.0]


def test_rules_from_a_study_exclusion_section():
    rules = rules_from_study_config(
        {"min_catch_accuracy": 0.6, "total_time_s": [90, 900], "min_choices_per_row": 0,
         "max_practice_attempts": 5, "min_rt_ms": 250}
    )  # fmt: skip
    assert (rules.min_catch_accuracy, rules.min_duration_s, rules.max_duration_s) == (0.6, 90, 900)
    assert rules.min_choices_per_side is None  # 0 = no limit
    assert (rules.max_practice_attempts, rules.min_rt_ms) == (5, 250)
    assert rules_from_study_config(None) == ExclusionRules()
    assert rules_from_study_config({"total_time_s": None}).min_duration_s is None
    over = rules_from_options(["min_catch_accuracy=0.9"], base=rules)
    assert over.min_catch_accuracy == 0.9 and over.min_duration_s == 90


# --- tests and comparisons -----------------------------------------------------------------


def test_paired_condition_difference_and_chance():
    frame = tidy(
        [
            (f"p{p}", f"u{u}", cond, (u < hits))
            for p in range(4)
            for cond, hits in (("natural", 4), ("synthetic", 2))
            for u in range(4)
        ]
    )
    result = analysis.compare(frame, "condition", "natural", "synthetic", n_resamples=200)
    assert result["paired"] and result["difference"] == pytest.approx(0.5)
    assert result["ci_low"] == result["ci_high"] == pytest.approx(0.5)
    chance = analysis.chance_tests(frame, ["condition"]).set_index("condition")
    assert chance.loc["natural", "p_binomial"] == pytest.approx(0.5**16)
    assert chance.loc["synthetic", "p_binomial"] > 0.5


def test_glmm_recovers_condition_effect():
    frame = synthetic_responses(40, 2, 60, 2400, seed=4)
    fit = analysis.binomial_glmm(frame)
    assert fit["fitted"]
    effect = fit["fixed_effects"]["C(condition)[T.synthetic]"]["log_odds"]
    assert -1.2 < effect < -0.2  # simulated: 0.9 - 1.6 = -0.7


# --- CLI on a file -------------------------------------------------------------------------


def test_cli_analyze_file_json_table_html(tmp_path):
    frame = synthetic_responses(30, 3, 60, 1800, seed=5)
    frame = frame.rename(columns={"participant": "subject", "correct": "hit", "rt_ms": "rt"})
    frame["hit"] = frame["hit"].map({True: "true", False: "false"})
    path = tmp_path / "responses.csv"
    frame.to_csv(path)
    frame = frame.rename(columns={"unit": "feature"})
    frame.to_csv(path)
    args = [
        "analyze",
        "--responses",
        str(path),
        "--bootstrap",
        "200",
        "--columns",
        "participant=subject,condition=condition,correct=hit,rt=rt",
        "--unit",
        "feature",
    ]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    expected = (
        frame.assign(hit=frame["hit"] == "true").groupby(["condition", "subject"])["hit"].mean()
    )
    for condition in ("natural", "synthetic"):
        scores = data["by_condition"][condition]
        assert scores["accuracy"] == pytest.approx(expected[condition].mean())
        assert scores["ci_low"] < scores["accuracy"] < scores["ci_high"]
        assert scores["n_participants"] == 30
    assert {"by_layer", "by_unit", "excluded"} <= set(data)
    table = runner.invoke(app, [*args, "--format", "table"])
    assert table.exit_code == 0 and "by_condition" in table.output
    report = tmp_path / "report.html"
    html = runner.invoke(app, [*args, "--format", "html", "--output", str(report)])
    assert html.exit_code == 0 and html.output.strip() == str(report)
    text = report.read_text()
    assert text.count("data:image/png;base64,") >= 3 and "<script" not in text


def test_quickstart_notebook_runs(tmp_path):
    """The example notebook executes top to bottom and ends with a figure."""
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    path = Path(__file__).parents[1] / "analysis" / "examples" / "quickstart.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert "image/png" in outputs[-1]["data"]
    assert "natural" in outputs[2]["data"]["text/plain"]


def test_figures_save_as_png_and_svg(tmp_path):
    from analysis import plots

    frame = synthetic_responses(20, 2, 40, 800, seed=6)
    tables = analysis.scores(frame, n_resamples=100)
    figures = [
        plots.plot_by_condition(tables["by_condition"]),
        plots.plot_by_model(tables["by_model"]),
        plots.plot_by_layer(tables["by_layer"], plots.layer_depths(frame)),
        plots.plot_unit_scatter(tables["by_unit"]),
    ]
    png = plots.save_figure(figures[3], tmp_path / "units.png")
    svg = plots.save_figure(figures[2], tmp_path / "layers.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text()[:500]
    with pytest.raises(AppError, match="use .png or .svg"):
        plots.save_figure(figures[0], tmp_path / "x.pdf")
    with pytest.raises(AppError, match="no per-unit scores for condition 'mixed'"):
        plots.plot_unit_scatter(tables["by_unit"], x="mixed")


def test_analysis_imports_without_fastapi():
    """Notebooks import analysis without the web stack."""
    import subprocess
    import sys

    code = "import sys, analysis; sys.exit('fastapi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_parquet_input_with_real_booleans(tmp_path):
    frame = synthetic_responses(10, 2, 20, 200, seed=8)
    frame.to_parquet(tmp_path / "r.parquet")
    loaded = analysis.load_responses(tmp_path / "r.parquet", where=["condition=natural"])
    assert len(loaded) == (frame["condition"] == "natural").sum()
    assert (
        loaded["correct"].tolist() == frame.loc[frame["condition"] == "natural", "correct"].tolist()
    )
