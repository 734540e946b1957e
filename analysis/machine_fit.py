"""alpha of the similarity observer, fitted to a study's human answers (`psychinterp mis fit`).

For every main trial with natural references the observer's similarity difference
d = Delta(max query) - Delta(min query) is computed from the very images the participants
saw (the content-addressed store); alpha is then the maximum-likelihood slope of
p(correct) = sigmoid(alpha * d) over the responses of the participants the study's
exclusion rules keep.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analysis.exclusions import apply_exclusions, rules_from_study_config
from analysis.load import load_study, study_config
from analysis.machine import AlphaFit, fit_alpha
from server.config import Settings
from server.db.models import Trial
from server.db.session import session_scope
from server.errors import AppError
from server.paradigms.base import right_and_wrong
from server.stimuli.store import ImageStore
from server.studies.observers.backends import make_backend
from server.studies.observers.similarity import delta_differences

FIT_CONDITION = "natural"


def trial_differences(
    db: Session,
    settings: Settings,
    trial_ids: list[str],
    backend_name: str,
    device: str = "cpu",
    backend_weights: str | None = None,
) -> dict[str, float]:
    """d per trial, embedding each stored image once (cached like any image set)."""
    trials = list(db.scalars(select(Trial).where(Trial.id.in_(trial_ids))))
    roles = {t.id: _two_afc_roles(t) for t in trials}
    shas = sorted({s for r in roles.values() for s in (r[2], r[3], *r[0], *r[1])})
    store = ImageStore(settings.stimuli_dir)
    paths = []
    for sha in shas:
        path, _ = store.locate(sha)
        if path is None:
            raise AppError(
                f"stimulus image {sha[:12]}... is missing from {settings.stimuli_dir}; "
                "point PSYCHINTERP_DATA_DIR at the study's data folder"
            )
        paths.append(path)
    backend = make_backend(backend_name, device, backend_weights)
    files, embeddings = backend.embed_files(paths, settings.data_dir / "embeddings")
    if len(files) != len(paths):
        raise AppError("some stored stimulus images could not be read; check the image store")
    position = {sha: i for i, sha in enumerate(shas)}
    out = {}
    for trial_id, (refs_max, refs_min, right, wrong) in roles.items():
        d = delta_differences(
            embeddings,
            np.array([[position[s] for s in refs_max]]),
            np.array([[position[s] for s in refs_min]]),
            np.array([position[right]]),
            np.array([position[wrong]]),
        )
        out[trial_id] = float(d[0])
    return out


def _two_afc_roles(trial: Trial) -> tuple[list[str], list[str], str, str]:
    """(max references, min references, right query, wrong query) from the role map."""
    images = trial.images or {}
    refs_max, refs_min = images.get("references_max"), images.get("references_min")
    if not refs_max or not refs_min:
        raise AppError(
            f"trial {trial.id} ({trial.paradigm}, {trial.condition}) has no max and min "
            "reference sets; the similarity observer's alpha is fitted on trials that show both"
        )
    right, wrong = right_and_wrong(images, list(trial.choices), trial.answer)
    return list(refs_max), list(refs_min), right, wrong


def fit_study_alpha(
    session_factory: sessionmaker[Session],
    settings: Settings,
    slug: str,
    backend: str,
    device: str = "cpu",
    backend_weights: str | None = None,
    exclusions: bool = True,
) -> AlphaFit:
    """Maximum-likelihood alpha from the kept participants' natural-reference main trials."""
    engine = session_factory.kw["bind"]
    frame = load_study(engine, slug)
    if exclusions and not frame.empty:
        rules = rules_from_study_config(study_config(engine, slug).get("exclusion"))
        frame, _ = apply_exclusions(frame, rules)
    if frame.empty:
        raise AppError(f"study {slug!r} has no responses (left) to fit alpha to")
    rows = frame[(frame["trial_kind"] == "main") & (frame["condition"] == FIT_CONDITION)]
    if rows.empty:
        raise AppError(
            f"study {slug!r} has no main responses with {FIT_CONDITION} references: "
            "alpha is fitted to trials that show natural exemplars"
        )
    with session_scope(session_factory) as db:
        d = trial_differences(
            db, settings, sorted(set(rows["trial"])), backend, device, backend_weights
        )
    return fit_alpha(rows["trial"].map(d).to_numpy(), rows["correct"].to_numpy(dtype=bool))
