"""Anomaly detection from per-image scores: the AUROC and a suggested threshold.

Every hf_vae model scores an image (`model.score`, the `"image-scoring"` pipeline, `hf-vae score`), higher
meaning less likely under the model: -log p(x) in nats for the likelihood models, the reconstruction
error for a VQ-VAE. Scoring a reference set (images like the training data) and a set of outliers gives a
detector whose quality is the area under the ROC curve (1 = every outlier scores above every reference
image, 0.5 = chance). The threshold suggested is the one of Youden's J (the largest true-positive rate
minus false-positive rate), with its rates, so a user can flag new images by `score >= threshold`.
The ROC maths is scikit-learn's (`roc_auc_score`, `roc_curve`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AnomalyReport:
    """What `anomaly_detection` measured. Scores at or above `threshold` are flagged as outliers."""

    auroc: float
    threshold: float
    true_positive_rate: float  # fraction of the outliers flagged at `threshold`
    false_positive_rate: float  # fraction of the reference images flagged at `threshold`
    num_reference: int
    num_outliers: int

    def to_dict(self) -> dict:
        return asdict(self)


def _scores(name: str, scores) -> np.ndarray:
    values = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence of scores, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"`{name}` must be finite scores, got {int((~np.isfinite(values)).sum())} non-finite value(s)")
    return values


def anomaly_detection(reference_scores, outlier_scores) -> AnomalyReport:
    """AUROC of telling `outlier_scores` from `reference_scores` (1-D tensors, arrays or lists; higher =
    more anomalous), and the threshold of Youden's J with its true- and false-positive rates."""
    from sklearn.metrics import roc_auc_score, roc_curve  # scikit-learn is slow to import: only when needed

    reference = _scores("reference_scores", reference_scores)
    outliers = _scores("outlier_scores", outlier_scores)
    targets = np.concatenate([np.zeros(reference.size), np.ones(outliers.size)])
    scores = np.concatenate([reference, outliers])
    fpr, tpr, thresholds = roc_curve(targets, scores)
    # roc_curve's first threshold is +inf (nothing flagged); J = 0 there, so it never wins over a real one.
    best = int(np.argmax(tpr - fpr))
    return AnomalyReport(
        auroc=float(roc_auc_score(targets, scores)),
        threshold=float(thresholds[best]) if np.isfinite(thresholds[best]) else float(scores.max()),
        true_positive_rate=float(tpr[best]),
        false_positive_rate=float(fpr[best]),
        num_reference=int(reference.size),
        num_outliers=int(outliers.size),
    )
