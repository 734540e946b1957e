"""Occlusion stimuli and the occlusion paradigm end to end (issue 21), on the real
EfficientNet-Lite0: grid geometry, batched occlusion against an independent per-position
computation, bad input, and a generated study whose stored and served ground truth is
recomputed from the image bytes, with oracle and random observers through HTTP."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image as PILImage
from sqlalchemy import func, select

from server.app import create_app
from server.config import Settings
from server.db.models import Trial
from server.db.session import make_engine, make_session_factory, session_scope
from server.errors import AppError
from server.stimuli.occlusion import OcclusionError, occlude_unit, occlusion_grid
from server.stimuli.store import ImageStore
from server.stimuli.units import UnitRef
from server.studies.loading import StudyConfigError, parse_study_yaml
from server.studies.observers import make_observer
from server.studies.sessions import answers_for_session
from server.studies.simulate import run_simulation, serve_in_thread
from tests.conftest import DATABASE_BACKENDS, PinnedDraws

LAYER = "_blocks.4"


def test_grid_as_in_the_paper():
    grid = occlusion_grid(224, 0.4, 2)
    assert grid.patch == 90 and grid.stride == 2 and grid.per_side == 68
    assert len(grid.positions) == 68 * 68
    assert occlusion_grid(224, 0.3, 2).patch == 67
    assert occlusion_grid(224, 0.5, 2).patch == 112
    assert occlusion_grid(112, 0.4, 2).stride == 1  # the stride scales with the side
    with pytest.raises(OcclusionError, match="does not fit"):
        occlusion_grid(1, 0.4, 2)


def _photo(side: int = 128) -> np.ndarray:
    from skimage import data

    return np.asarray(PILImage.fromarray(data.astronaut()).resize((side, side)), dtype=np.uint8)


def _activation(model, pixels: np.ndarray, unit: int) -> float:
    """An independent read-out: a plain forward hook on the layer, the mean over space."""
    seen = {}
    handle = model.get_layer(LAYER).register_forward_hook(
        lambda _m, _i, out: seen.setdefault("out", out)
    )
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float()[None] / 255
    mean = torch.tensor(model.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.preprocessing.std).view(1, 3, 1, 1)
    try:
        with torch.no_grad():
            model.module((x - mean) / std)
    finally:
        handle.remove()
    return float(seen["out"][0, unit].mean())


def test_batched_occlusion_matches_a_naive_loop(lite0):
    base = _photo(128)
    occ = occlude_unit(lite0, UnitRef(lite0.spec.name, LAYER, 5), base, 0.4, 60, batch_size=4)
    patch = round(0.4 * 128)
    naive = []
    for top, left in occ.grid.positions:
        copy = base.copy()
        region = base[top : top + patch, left : left + patch].reshape(-1, 3).astype(np.float64)
        copy[top : top + patch, left : left + patch] = np.round(region.mean(0)).astype(np.uint8)
        naive.append(_activation(lite0, copy, 5))
    np.testing.assert_allclose(occ.activations, naive, rtol=1e-4, atol=1e-4)
    assert np.argmax(naive) == np.argmax(occ.activations)
    assert _activation(lite0, occ.max_image, 5) == pytest.approx(occ.activation_max, abs=1e-4)
    assert _activation(lite0, occ.min_image, 5) == pytest.approx(occ.activation_min, abs=1e-4)


def test_bad_occlusion_inputs(lite0):
    unit = UnitRef(lite0.spec.name, LAYER, 0)
    flat = np.full((96, 96, 3), 120, dtype=np.uint8)  # occluding a flat image changes nothing
    with pytest.raises(OcclusionError, match="every occlusion leaves the same activation"):
        occlude_unit(lite0, unit, flat, 0.4, 40)
    with pytest.raises(OcclusionError, match="smaller than task.min_base_px"):
        occlude_unit(lite0, unit, _photo(48), 0.4, 2, min_base_px=64)


def _occlusion_yaml(**task) -> str:
    config = yaml.safe_load(Path("studies/occlusion-demo.yaml").read_text())
    config["task"] |= {"stride_px": 60, **task}  # 3 x 3 positions: seconds on a CPU
    config["generation"] |= {"layers": [LAYER], "demo_pool_per_photo": 6, "demo_pool_size": 160}
    config["trials"]["main"] = 4
    return yaml.safe_dump(config, sort_keys=False)


def test_occlusion_config_errors_name_file_line_field():
    parse_study_yaml(_occlusion_yaml(), "occ.yaml")
    with pytest.raises(StudyConfigError, match=r"occ\.yaml:\d+: task: patch_fraction: Input"):
        parse_study_yaml(_occlusion_yaml(patch_fraction=0.9), "occ.yaml")
    with pytest.raises(StudyConfigError, match=r"occ\.yaml:\d+: task: .*lower stride_px"):
        parse_study_yaml(_occlusion_yaml(stride_px=200), "occ.yaml")
    with pytest.raises(StudyConfigError, match=r"task: .*smaller than min_base_px"):
        parse_study_yaml(_occlusion_yaml(image_px=48), "occ.yaml")
    mixed = _occlusion_yaml()
    mixed = mixed.replace("paradigm: occlusion", "paradigm: imi")
    with pytest.raises(StudyConfigError, match="task: .*Extra inputs"):
        parse_study_yaml(mixed, "occ.yaml")


@pytest.fixture(scope="module", params=DATABASE_BACKENDS)
def occlusion_study(request, tmp_path_factory, study_data_dir):
    from tests.conftest import backend_database, launched_study

    with backend_database(request.param, tmp_path_factory, study_data_dir, "occ") as opened:
        settings, _, factory = opened
        yield settings, factory, launched_study(factory, settings, _occlusion_yaml(), "occ.yaml")


def test_stored_ground_truth_recomputed_from_the_files(occlusion_study, lite0):
    settings, factory, study = occlusion_study
    store = ImageStore(settings.stimuli_dir)
    with session_scope(factory) as db:
        trials = db.scalars(select(Trial).where(Trial.study_id == study.id)).all()
        from server.db.models import Unit

        units = {t.unit_id: db.get(Unit, t.unit_id).index for t in trials}
    kinds = {t.kind for t in trials}
    assert kinds == {"main", "practice", "catch"} and {t.paradigm for t in trials} == {"occlusion"}
    for trial in [t for t in trials if t.kind == "main"]:
        assert set(trial.images) == {"query_max", "query_min", "base", "references_max"}
        assert trial.answer == "query_max"
        assert trial.images["base"] not in trial.images["references_max"]
        acts = {}
        for role in ("query_max", "query_min"):
            path, _ = store.locate(trial.images[role])
            pixels = np.asarray(PILImage.open(path).convert("RGB"))
            acts[role] = _activation(lite0, pixels, units[trial.unit_id])
        assert acts["query_max"] > acts["query_min"]
        assert acts["query_max"] == pytest.approx(trial.details["activation_max"], abs=1e-3)
        assert acts["query_min"] == pytest.approx(trial.details["activation_min"], abs=1e-3)


def test_served_images_agree_with_the_grading(occlusion_study, lite0):
    """From the bytes the API serves: the query that activates the unit more is the one
    the server grades as right."""
    from fastapi.testclient import TestClient

    settings, factory, _ = occlusion_study
    body = {
        "client": {"user_agent": "pytest"},
        "PROLIFIC_PID": uuid.uuid4().hex,
        "STUDY_ID": "s",
        "SESSION_ID": "x",
    }
    with TestClient(create_app(settings)) as client:
        session = client.post("/api/v1/studies/occlusion-demo/sessions", json=body).json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        checked = 0
        for _ in range(12):
            trial = client.get(
                f"/api/v1/sessions/{session['session_id']}/trials/next", headers=headers
            )
            if trial.status_code == 204:
                break
            trial = trial.json()
            assert trial["type"] == "occlusion" and "base" in trial["images"]
            with session_scope(factory) as db:
                right = answers_for_session(db, session["session_id"])[trial["trial_id"]]
                unit = db.scalar(select(Trial.unit_id).where(Trial.id == trial["trial_id"]))
                from server.db.models import Unit

                index = db.get(Unit, unit).index
            acts = []
            for side in ("query_a", "query_b"):
                data = client.get(trial["images"][side]).content
                pixels = np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))
                acts.append(_activation(lite0, pixels, index))
            assert (acts[0] > acts[1]) == bool(right), (trial, acts)
            reply = client.post(
                f"/api/v1/sessions/{session['session_id']}/responses",
                json={
                    "trial_id": trial["trial_id"],
                    "choice": "a" if right else "b",
                    "confidence": 3,
                    "rt_ms": 900,
                    "idempotency_key": uuid.uuid4().hex,
                },
                headers=headers,
            )
            assert reply.status_code == 201, reply.text
            checked += 1
        assert checked >= 5


def test_oracle_scores_one_and_random_about_half(occlusion_study):
    settings, factory, _ = occlusion_study
    with serve_in_thread(create_app(settings)) as url:
        oracle = run_simulation(
            url, "occlusion-demo", 6, "oracle", concurrency=3, seed=1, session_factory=factory
        )
        assert oracle.completed == 6 and oracle.accuracy == {"natural": 1.0, "none": 1.0}
        # Pinned draws: unpinned, the pooled accuracy fell outside (0.35, 0.65) in ~1.8e-4.
        coin = PinnedDraws(make_observer("random"), factory)
        rand = run_simulation(
            url, "occlusion-demo", 40, coin, concurrency=4, seed=2, session_factory=factory
        )
    assert rand.completed == 40
    pooled = sum(rand.accuracy.values()) / len(rand.accuracy)
    assert 0.35 < pooled < 0.65, rand.accuracy


def test_accuracy_by_activation_difference(occlusion_study):
    """After the simulations above: per condition and difference bin, the score table (the
    study's score machinery: accuracy with a CI), and the same through the paradigm."""
    from analysis import load_study
    from analysis.occlusion import accuracy_by_activation_difference, difference_correlations
    from server import paradigms

    settings, _, _ = occlusion_study
    frame = load_study(settings, "occlusion-demo")
    assert (frame.loc[frame["trial_kind"] == "main", "activation_diff"] > 0).all()
    table = accuracy_by_activation_difference(frame, bins=2, n_resamples=200)
    assert set(table["condition"]) == {"natural", "none"}
    assert set(table["diff_bin"]) <= {1, 2} and (table["diff_low"] < table["diff_high"]).all()
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()
    main = frame[frame["trial_kind"] == "main"]
    assert table["n_responses"].sum() == len(main)
    for condition, rows in table.groupby("condition"):  # bins split the responses, no overlap
        assert rows["n_responses"].sum() == (main["condition"] == condition).sum()
    assert set(difference_correlations(frame)["condition"]) == {"natural", "none"}
    extras = paradigms.get("occlusion").analysis_extras(frame)
    assert set(extras) == {"by_activation_difference", "activation_difference_correlation"}
    with pytest.raises(AppError, match="no 'activation_diff' column"):
        accuracy_by_activation_difference(frame.drop(columns="activation_diff"))


def test_export_has_the_paradigm_columns(occlusion_study, tmp_path):
    """CSV and Parquet exports carry the occlusion paradigm's declared export columns,
    with values that agree with the stored trials and the manifest's ground truth."""
    import pandas as pd

    from analysis.export import export_study
    from analysis.load import EXPORT_COLUMNS
    from server import paradigms

    settings, factory, study = occlusion_study
    declared = list(paradigms.get("occlusion").export_columns)
    with session_scope(factory) as db:
        trials = {t.id: t for t in db.scalars(select(Trial).where(Trial.study_id == study.id))}
    frames = {}
    for fmt in ("csv", "parquet"):
        result = export_study(settings, "occlusion-demo", fmt, tmp_path / f"occ.{fmt}")
        read = pd.read_csv if fmt == "csv" else pd.read_parquet
        frames[fmt] = read(result.path)
        assert list(frames[fmt].columns) == [*EXPORT_COLUMNS, *declared]
    for frame in frames.values():
        for row in frame.itertuples():
            trial = trials[row.trial_id]
            assert row.base_image == trial.images["base"]
            assert row.activation_diff == pytest.approx(row.activation_max - row.activation_min)
            assert row.activation_diff == pytest.approx(trial.details["activation_diff"])
            assert row.patch_fraction == 0.4 and row.patch_px == round(0.4 * 224)
            assert 0 <= row.occlusion_min_top <= 224 - row.patch_px
            # obvious trials (catch, first practice) show the unoccluded base as the max
            assert pd.isna(row.occlusion_max_top) == bool(row.obvious)
        assert (
            frame["obvious"].astype(bool).sum() > 0 and (~frame["obvious"].astype(bool)).sum() > 0
        )
    assert str(frames["parquet"]["patch_px"].dtype) == "int64"


def test_report_and_dashboard_show_accuracy_by_activation_difference(occlusion_study, tmp_path):
    """The HTML report (`psychinterp analyze --format html`, on the database and on the export
    file) and the study's dashboard page have the section; an IMI study's report has not."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from analysis.export import export_study
    from server.cli import app
    from tests.test_admin_results import _logged_in

    settings, factory, _ = occlusion_study
    runner = CliRunner()
    url = ["--database-url", settings.database_url, "--no-exclusions", "--bootstrap", "100"]
    report = tmp_path / "occ.html"
    done = runner.invoke(app, ["analyze", "occlusion-demo", *url, "--format", "html",
                               "--output", str(report)])  # fmt: skip
    assert done.exit_code == 0, done.output
    page = report.read_text()
    assert "data-testid='by_activation_difference'" in page
    assert "<h2>Accuracy by activation difference</h2><img" in page
    assert "data-testid='activation_difference_correlation'" in page

    export = export_study(settings, "occlusion-demo", "csv", tmp_path / "occ.csv").path
    columns = "participant=participant,condition=condition,correct=correct,trial=trial_id"
    done = runner.invoke(app, ["analyze", "--responses", str(export), "--columns", columns,
                               "--format", "json", "--bootstrap", "100", "--no-exclusions"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert '"by_activation_difference"' in done.output

    with TestClient(create_app(settings)) as client:
        _logged_in(client, factory)
        dashboard = client.get("/admin/studies/occlusion-demo")
        preview = client.get("/admin/studies/occlusion-demo/preview").text
    assert dashboard.status_code == 200
    table = dashboard.text[dashboard.text.index('data-testid="by-activation-difference"') :]
    assert re.search(r"<td>natural</td><td>1</td><td>[0-9.e-]+ – [0-9.e-]+</td>", table)
    assert 'data-testid="activation-difference-correlation"' in dashboard.text
    assert dashboard.text.count("data:image/png;base64,") >= 2  # by condition + by difference
    # the researcher's preview shows the occlusion layout under the study's titles
    assert preview.count('data-testid="preview-occlusion"') == 3
    assert "Another Favorite Image" in preview and "Which image is more favored?" in preview


def test_imi_report_has_no_activation_difference_section(sqlite_url, tmp_path):
    from analysis import load_study
    from analysis.exclusions import rules_from_options
    from analysis.report import analyze, to_html, to_json
    from tests.test_analysis_db import ANSWERS, make_study

    make_study(sqlite_url, ANSWERS)
    frame = load_study(sqlite_url, "imi")
    assert "activation_diff" not in frame.columns
    no_rules = rules_from_options([], no_exclusions=True)
    result = analyze(frame, rules=no_rules, n_resamples=100, glmm=False)
    assert result.paradigm_tables == {}
    assert "activation_difference" not in to_html(result, frame)
    assert "by_activation_difference" not in to_json(result)


def test_preview_and_overview_sheet_show_occlusion_trials(occlusion_study):
    """The preview reads each trial's images by role from the seam (base, the two occluded
    queries, the favourite references), and the contact sheet has the occlusion layout."""
    from server.stimuli.generate import overview_path
    from server.stimuli.overview import OCCLUSION_BLOCKS, sheet_size
    from server.studies.preview import study_preview

    settings, factory, study = occlusion_study
    with session_scope(factory) as db:
        preview = study_preview(db, study)
        stored = db.scalars(select(Trial).where(Trial.study_id == study.id)).all()
        stimulus_set_id = study.stimulus_set_id
    assert preview["titles"]["references_max"] == "Favorite Images"
    assert preview["titles"]["base"] == "Another Favorite Image"
    assert [t["kind"] for t in preview["trials"]] == ["practice", "main", "main"]
    for shown in preview["trials"]:
        assert shown["type"] == "occlusion"
        same_base = [t for t in stored if t.images["base"] == shown["base"]]
        queries = {t.images[role] for t in same_base for role in t.choices}
        assert len(set(shown["queries"])) == 2 and set(shown["queries"]) <= queries
        assert shown["references_min"] == []
    sheet = PILImage.open(overview_path(settings, stimulus_set_id))
    columns = sum(n or 4 for *_, n in OCCLUSION_BLOCKS)  # base, max, min, 4 + 4 references
    assert sheet.size[0] == sheet_size(columns, 1)[0]


def test_generation_job_on_sqlite_finishes(tmp_path, study_data_dir):
    """As `psychinterp study generate` and the dashboard run it: a job with progress rows.
    The occlusion step runs after the stimulus set is written; on SQLite a progress write
    then would wait for that transaction's lock ("database is locked")."""
    from server.db.migrate import upgrade_database
    from server.db.models import Job
    from server.jobs import service as jobs
    from server.jobs.runner import work_once
    from server.studies.service import create_study

    url = f"sqlite:///{tmp_path / 'job.db'}"
    settings = Settings(database_url=url, data_dir=study_data_dir, secret_key="test-secret-key")
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    text = _occlusion_yaml().replace("slug: occlusion-demo", "slug: occlusion-job")
    with session_scope(factory) as db:
        study = create_study(db, settings, text, "occ.yaml")
        job = jobs.submit_job(db, "generate_study", {"slug": "occlusion-job"}, study.id)
    assert work_once(factory, settings, "test:occlusion") == "succeeded"
    with session_scope(factory) as db:
        done = db.get(Job, job.id)
        assert done.status == "succeeded", done.error
        assert "store images: started" in done.log_tail
        assert db.scalar(select(func.count()).select_from(Trial)) > 0
    engine.dispose()
