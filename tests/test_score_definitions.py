"""Score definitions (issue 19): crossed intervals cover the truth, imi and borowski
reproduce hand-computed values, and every table says which definition produced it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

import analysis
from analysis.bootstrap import hierarchical_bootstrap
from analysis.crossed import crossed_bootstrap
from analysis.definitions import bca_interval
from analysis.synthetic import crossed_studies, crossed_truth, synthetic_responses
from server.cli import app
from server.errors import AppError

runner = CliRunner()


def tidy(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["participant", "unit", "condition", "correct"])
    return frame.assign(trial_kind="main", excluded=False, model="", layer="")


# Two participants, three units, one condition.
#   p1: u1 1/1, u2 1/2, u3 0/1 -> 2/4 = 0.5
#   p2: u1 1/1, u3 1/1       -> 2/2 = 1.0
# per unit: u1 2/2 = 1.0, u2 1/2 = 0.5, u3 1/2 = 0.5
TABLE = tidy(
    [
        ("p1", "u1", "x", True),
        ("p1", "u2", "x", True),
        ("p1", "u2", "x", False),
        ("p1", "u3", "x", False),
        ("p2", "u1", "x", True),
        ("p2", "u3", "x", True),
    ]
)


def test_borowski_is_mean_of_participant_means_plus_minus_two_sem():
    row = analysis.score_table(TABLE, ["condition"], score="borowski").iloc[0]
    sem = np.std([0.5, 1.0], ddof=1) / np.sqrt(2)  # 0.25
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["sem"] == pytest.approx(sem)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.75 - 2 * sem, 0.75 + 2 * sem))
    assert (row["score"], row["n_resamples"]) == ("borowski", 0)
    assert (row["n_participants"], row["n_responses"], row["n_units"]) == (2, 6, 3)


def test_imi_is_mean_of_unit_means_with_bca_over_units():
    row = analysis.score_table(TABLE, ["condition"], score="imi").iloc[0]
    assert row["accuracy"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert row["sem"] == pytest.approx(np.std([1.0, 0.5, 0.5], ddof=1) / np.sqrt(3))
    assert (row["score"], row["n_resamples"]) == ("imi", 10_000)
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    assert 0.5 <= row["ci_low"] and row["ci_high"] <= 1.0


def test_imi_per_unit_resamples_that_units_responses():
    table = analysis.score_table(TABLE, ["unit"], score="imi", n_resamples=2000)
    by_unit = table.set_index("unit")
    assert by_unit["accuracy"].to_dict() == pytest.approx({"u1": 1.0, "u2": 0.5, "u3": 0.5})
    # All answers right: nothing to resample, the interval is the point.
    assert (by_unit.loc["u1", "ci_low"], by_unit.loc["u1", "ci_high"]) == (1.0, 1.0)
    assert (by_unit["n_units"] == 1).all()


def test_bca_matches_scipy():
    """Same interval as scipy.stats.bootstrap(method='BCa') up to Monte Carlo error."""
    rng = np.random.default_rng(4)
    samples = [rng.beta(4, 2, 40), rng.beta(2, 2, 25)]
    values = np.concatenate(samples)
    group = np.repeat([0, 1], [40, 25])
    _, low, high = bca_interval(values, group, 20_000, seed=1)
    for i, sample in enumerate(samples):
        ref = sps.bootstrap(
            (sample,), np.mean, n_resamples=20_000, method="BCa", random_state=2
        ).confidence_interval
        assert low[i] == pytest.approx(ref.low, abs=0.006)
        assert high[i] == pytest.approx(ref.high, abs=0.006)


def test_crossed_interval_covers_the_truth_where_nested_does_not():
    """Issue 19's simulation, smaller: 120 crossed studies of 40 x 40."""
    truth = crossed_truth()
    frame = crossed_studies(120, seed=3)
    table = analysis.score_table(frame, ["condition"], n_resamples=500, seed=1)
    covered = np.mean((table["ci_low"] <= truth) & (truth <= table["ci_high"]))
    assert 0.89 <= covered <= 0.99
    low, high = hierarchical_bootstrap(frame, ["condition"], 500, seed=1).interval()
    assert np.mean((low <= truth) & (truth <= high)) < 0.85
    assert (table["score"] == "crossed").all() and (table["n_resamples"] == 500).all()


def _naive_two_way(frame: pd.DataFrame, n_resamples: int, seed: int) -> np.ndarray:
    """The definition, one resample at a time: draw participants and units, keep the cells
    where both were drawn (each counted w_p x w_u times), mean of participant means."""
    rng = np.random.default_rng(seed)
    participants, units = frame["participant"].unique(), frame["unit"].unique()
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        w_p = pd.Series(rng.choice(participants, len(participants))).value_counts()
        w_u = pd.Series(rng.choice(units, len(units))).value_counts()
        weight = frame["unit"].map(w_u).fillna(0)
        kept = frame.assign(w=weight, wk=weight * frame["correct"])[weight > 0]
        per = kept.groupby("participant")[["wk", "w"]].sum()
        prop = per["wk"] / per["w"]
        out[b] = np.average(prop, weights=w_p.reindex(prop.index).fillna(0))
    return out


def test_vectorised_crossed_matches_definition():
    frame = crossed_studies(1, n_units=8, n_participants=10, seed=5)
    fast = crossed_bootstrap(frame, ["condition"], 4000, seed=1).resamples[0]
    slow = _naive_two_way(frame, 1500, seed=2)
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.01)
    assert fast.std() == pytest.approx(slow.std(), rel=0.1)


def test_crossed_is_seeded_and_default():
    frame = crossed_studies(2, n_units=6, n_participants=5, seed=1)
    first = analysis.score_table(frame, ["condition"], n_resamples=100, seed=3)
    again = analysis.score_table(frame, ["condition"], n_resamples=100, seed=3, score="crossed")
    pd.testing.assert_frame_equal(first, again)


def test_unknown_definition_and_imi_without_units_are_clear_errors():
    with pytest.raises(AppError, match="unknown score definition 'glmm': use one of crossed"):
        analysis.score_table(TABLE, ["condition"], score="glmm")
    no_units = TABLE.assign(unit="")
    with pytest.raises(AppError, match="score 'imi' averages per-unit accuracies"):
        analysis.score_table(no_units, ["condition"], score="imi")


# --- per-unit rank tests, and the definition in every output -----------------------------


def test_unit_rank_tests_are_scipys_on_per_unit_accuracies():
    frame = analysis.main_trials(synthetic_responses(20, 3, 30, 1200, seed=1))
    tests = analysis.unit_rank_tests(frame, "model")
    per_unit = frame.groupby(["model", "unit"])["correct"].mean()
    samples = [per_unit[m].to_numpy() for m in ("model-0", "model-1", "model-2")]
    assert tests["kruskal"]["p_value"] == pytest.approx(sps.kruskal(*samples).pvalue)
    assert tests["n_units"] == {"model-0": 10, "model-1": 10, "model-2": 10}
    first = tests["brunner_munzel"][0]
    assert (first["first"], first["second"]) == ("model-0", "model-1")
    assert first["p_value"] == pytest.approx(sps.brunnermunzel(*samples[:2]).pvalue)
    # One unit per level: nothing to test, said as such rather than NaN.
    tiny = frame[frame["unit"].isin(["u0", "u1"])]
    assert analysis.unit_rank_tests(tiny, "model")["kruskal"] is None


def test_cli_score_option_in_json_table_and_html(tmp_path):
    path = tmp_path / "responses.csv"
    synthetic_responses(20, 3, 30, 1200, seed=2).to_csv(path, index=False)
    args = ["analyze", "--responses", str(path)]
    result = runner.invoke(app, [*args, "--score", "borowski", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["score"]["definition"] == "borowski" and data["score"]["n_resamples"] == 0
    natural = data["by_condition"]["natural"]
    assert {"accuracy", "ci_low", "ci_high", "n_participants", "n_responses"} <= set(natural)
    assert (natural["score"], natural["n_resamples"]) == ("borowski", 0)
    assert natural["ci_high"] - natural["accuracy"] == pytest.approx(2 * natural["sem"])
    assert data["unit_tests"]["condition"]["kruskal"]["p_value"] < 0.05
    imi = json.loads(
        runner.invoke(
            app, [*args, "--score", "imi", "--bootstrap", "2000", "--format", "json"]
        ).output
    )
    assert imi["score"]["n_resamples"] == 2000
    assert all(row["score"] == "imi" for row in imi["by_unit"])
    table = runner.invoke(app, [*args, "--format", "table"])
    assert "score: crossed" in table.output and "Kruskal-Wallis across" in table.output
    report = tmp_path / "r.html"
    runner.invoke(app, [*args, "--score", "imi", "--format", "html", "--output", str(report)])
    text = report.read_text()
    assert "score: imi" in text and "10000 resamples" in text and "Brunner-Munzel" in text
    bad = runner.invoke(app, [*args, "--score", "mean"])
    assert bad.exit_code == 1 and "unknown score definition 'mean'" in bad.output


def test_borowski_raw_data_layout_with_the_borowski_definition(tmp_path):
    """Borowski et al.'s released Exp. I file layout (data_from_human_experiments/
    experiment_I_main_practice_catch_repeated_trials_preprocessed.csv: an unnamed index,
    subject_id, instr_type natural/optimized/none_pre, trial_type practice/main,
    catch_trial, correct) through `analyze --responses ... --score borowski`. The real
    file is not shipped here (it gives natural 0.922 / optimized 0.820, README); this small
    table in its layout has hand-computed answers."""
    rows = []
    correct = {  # subject -> condition -> main-trial answers
        1: {"natural": [1, 1, 1, 0], "optimized": [1, 0, 1, 0]},
        2: {"natural": [1, 1, 1, 1], "optimized": [1, 1, 1, 0]},
        3: {"natural": [1, 1, 0, 1], "optimized": [0, 1, 1, 1]},
    }
    for subject, by_condition in correct.items():
        rows.append((subject, "natural", "practice", False, False))  # dropped by --where
        rows.append((subject, "optimized", "main", True, False))  # a catch trial: dropped
        rows.append((subject, "none_pre", "main", False, True))
        for condition, answers in by_condition.items():
            rows += [(subject, condition, "main", False, bool(a)) for a in answers]
    frame = pd.DataFrame(
        rows, columns=["subject_id", "instr_type", "trial_type", "catch_trial", "correct"]
    )
    path = tmp_path / "experiment_I_main_practice_catch_repeated_trials_preprocessed.csv"
    frame.to_csv(path)  # with pandas' unnamed index column, as released
    result = runner.invoke(
        app,
        ["analyze", "--responses", str(path), "--score", "borowski", "--format", "json",
         "--columns", "participant=subject_id,condition=instr_type,correct=correct",
         "--where", "trial_type=main", "--where", "catch_trial=False"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["by_condition"]
    for condition, means in (("natural", [0.75, 1.0, 0.75]), ("optimized", [0.5, 0.75, 0.75])):
        row = data[condition]
        sem = np.std(means, ddof=1) / np.sqrt(3)
        assert row["accuracy"] == pytest.approx(np.mean(means))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(
            (np.mean(means) - 2 * sem, np.mean(means) + 2 * sem)
        )
        assert (row["score"], row["n_resamples"], row["n_participants"]) == ("borowski", 0, 3)
    assert json.loads(result.output)["score"]["caveat"] is None  # +-2 SEM: no units needed


def test_crossed_score_without_units_says_its_interval_ignores_units(tmp_path):
    """Without a unit column the crossed bootstrap can only resample participants; the
    output says so, and mapping the unit column removes the note."""
    path = tmp_path / "responses.csv"
    synthetic_responses(20, 3, 30, 1200, seed=2).to_csv(path, index=False)
    columns = "participant=participant,condition=condition,correct=correct"
    without = runner.invoke(
        app, ["analyze", "--responses", str(path), "--columns", columns, "--format", "json"]
    )
    assert without.exit_code == 0, without.output
    assert "resamples participants only" not in without.output  # the file has `unit`
    path.write_text(pd.read_csv(path).drop(columns="unit").to_csv(index=False))
    table = runner.invoke(app, ["analyze", "--responses", str(path), "--bootstrap", "100"])
    assert table.exit_code == 0, table.output
    assert "note: the responses carry no unit" in table.output.splitlines()[1]
    data = json.loads(
        runner.invoke(
            app, ["analyze", "--responses", str(path), "--bootstrap", "100", "--format", "json"]
        ).output
    )
    assert data["score"]["caveat"].startswith("the responses carry no unit")
