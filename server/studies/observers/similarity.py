"""The similarity observer of the machine interpretability score (Zimmermann, Klindt & Brendel,
NeurIPS 2024): it picks the query that looks more like the positive references.

For each query q, Delta(q) = mean s(q, positive refs) - mean s(q, negative refs); the observer
is right with probability p = sigmoid(alpha * (Delta(right) - Delta(wrong))). s is the cosine
similarity of image embeddings (DreamSim's distance is 1 - cosine of its embedding, so one
formula serves every backend). alpha only sharpens or flattens p: it never changes which query
the observer prefers, so it is fitted to human answers afterwards (`analysis.machine`).

Everything here works on arrays of many tasks at once: the batched MIS path gathers the
embeddings of every task of every unit and scores them in one einsum.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from server.errors import AppError

#: Default alpha of the builtin EfficientNet-Lite2 backend (how it was obtained: below).
DEFAULT_ALPHA = 16.0
DEFAULT_ALPHA_NOTE = (
    "alpha=16 (efficientnet-lite2 backend). No human responses ship with psychinterp, so it "
    "cannot be fitted here; it sets the scale of the backend's similarity differences: a task "
    "of median difficulty among EfficientNet-Lite0's units (8 per block, the demo photos, N=20, "
    "K=9: median |Delta_right - Delta_wrong| = 0.138) is answered right with p = 0.9, the order "
    "of human accuracy with natural references (92 +- 2%, Borowski et al. 2021, Exp. I); "
    "alpha = ln(9) / 0.138 = 15.9. Fit it to your own human responses with "
    "`psychinterp mis fit STUDY` and pass --alpha."
)


def normalize_rows(embeddings: np.ndarray) -> np.ndarray:
    """Unit-length rows (cosine similarity becomes a dot product); zero rows stay zero."""
    values = np.asarray(embeddings, dtype=np.float32)
    if values.ndim != 2:
        raise AppError(f"embeddings must be a 2-D array (images x features), got {values.shape}")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, 1e-12)


def query_deltas(queries: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Delta per query: (tasks, queries, dim), (tasks, K, dim) x 2 -> (tasks, queries).

    Embeddings must be unit length, so the dot product is the cosine similarity.
    """
    pos = np.einsum("tqd,tkd->tq", queries, positives) / positives.shape[1]
    neg = np.einsum("tqd,tkd->tq", queries, negatives) / negatives.shape[1]
    return pos - neg


def delta_differences(
    embeddings: np.ndarray,
    reference_pos: np.ndarray,
    reference_neg: np.ndarray,
    query_right: np.ndarray,
    query_wrong: np.ndarray,
) -> np.ndarray:
    """Delta(right query) - Delta(wrong query) for tasks given as positions into `embeddings`.

    reference_pos / reference_neg: (tasks, K) integer positions; query_*: (tasks,).
    """
    queries = embeddings[np.stack([query_right, query_wrong], axis=1)]
    deltas = query_deltas(queries, embeddings[reference_pos], embeddings[reference_neg])
    return deltas[:, 0] - deltas[:, 1]


def p_correct(differences: np.ndarray, alpha: float) -> np.ndarray:
    """sigmoid(alpha * (Delta_right - Delta_wrong)): the observer's chance of being right."""
    if not np.isfinite(alpha) or alpha < 0:
        raise AppError(f"alpha must be a finite number >= 0, got {alpha}")
    return expit(alpha * np.asarray(differences, dtype=np.float64))


def p_first(
    query_a: np.ndarray, query_b: np.ndarray, positives: np.ndarray, negatives: np.ndarray, alpha
) -> float:
    """Probability of answering query a for one trial (unit-length embeddings).

    With no references (the `none` condition) both deltas are 0 and p is 0.5.
    """
    if len(positives) == 0 or len(negatives) == 0:
        return 0.5
    queries = np.stack([query_a, query_b])[None]
    deltas = query_deltas(queries, positives[None], negatives[None])[0]
    return float(p_correct(np.array([deltas[0] - deltas[1]]), alpha)[0])
