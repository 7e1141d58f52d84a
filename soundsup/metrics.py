"""Per-class average precision for VOC 2007 classification, exact and rank based.

Labels follow the VOC files: 1 (present), -1 (absent), 0 (only difficult objects: ignored).
Scores may be any real numbers (probabilities, logits, sums of logits over test crops): only
their order matters, so nothing is squashed through a sigmoid and large logits stay exact.

Two definitions are reported side by side, because they differ by several points:

- ``step``: the area under the step precision-recall curve, tied scores grouped into one
  threshold. This is scikit-learn's ``average_precision_score`` (>= 0.19) and the metric of the
  published comparison tables.
- ``voc07``: the VOC2007 devkit's 11-point interpolated AP (``VOCevalcls.m``)::

      [so,si]=sort(-out); tp=gt(si)>0; fp=gt(si)<0; fp=cumsum(fp); tp=cumsum(tp);
      rec=tp/sum(gt>0); prec=tp./(fp+tp);
      ap=0; for t=0:0.1:1, p=max(prec(rec>=t)); if isempty(p), p=0; end; ap=ap+p/11; end

  The sort is stable, so tied scores keep their input order. Items labelled 0 keep their rank
  in the devkit but are neither true nor false positives: they repeat the previous (recall,
  precision) point (or give 0/0 = NaN, which MATLAB's ``max`` skips), so dropping them before
  ranking gives the same AP, which is what this module does. The thresholds are the exact
  decimals k/10 (``10 * tp >= k * n_pos`` in integers). A float range computed as k * 0.1
  (``numpy.arange(0, 1.1, 0.1)``, and MATLAB's ``0:0.1:1`` for its first half) holds
  0.30000000000000004 for 0.3 (and 0.6000000000000001, 0.7000000000000001 in numpy), which
  misses a recall of exactly 0.3 (3 of 10 positives); only such exact ties differ.

Both lie in [0, 1] exactly: the float sums that compute them can overshoot by an ulp (eleven
additions of 1/11 give 1.0000000000000002 for a class ranked perfectly), so the result is
clipped. A class with no positive item (after dropping 0 labels) has AP 0, as in scikit-learn
(``average_precision_score``: recall set to 1, AP 0, with a warning) and the devkit (recall
0/0 = NaN passes no threshold: AP 0); :func:`average_precision_table` logs a warning naming
such classes, so a missing class never poisons the mAP with NaN but is never silent either.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from soundsup.names import VOC_CLASSES

METHODS = ("step", "voc07")
TABLE_COLUMNS = ("class", "ap", "ap_voc07", "n_pos", "n_neg")

log = logging.getLogger(__name__)


class UndefinedAPWarning(UserWarning):
    """A class has no positive test item: its AP is set to 0 (scikit-learn's and the devkit's value)."""


def _ranked(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop 0 labels; return (is_positive bool (M,), scores float64 (M,)) in descending score order.

    The sort is stable: items with equal scores stay in input order (the devkit's order).
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(
            f"labels and scores must be 1-D of the same length; got {labels.shape} and {scores.shape}"
        )
    bad = ~np.isin(labels, (-1, 0, 1))
    if bad.any():
        raise ValueError(f"labels must be 1, -1 or 0; item {int(np.argmax(bad))} is {labels[bad][0]!r}")
    if np.isnan(scores).any():
        raise ValueError(f"scores contain NaN (item {int(np.argmax(np.isnan(scores)))})")
    keep = labels != 0
    kept_scores = scores[keep]
    order = np.argsort(-kept_scores, kind="stable")
    return labels[keep][order] > 0, kept_scores[order]


def _step_ap(positive: np.ndarray, scores: np.ndarray, n_pos: int) -> float:
    """Area under the step PR curve with tied scores forming one threshold (scikit-learn's AP)."""
    true_positives = np.cumsum(positive)
    false_positives = np.cumsum(~positive)
    group_ends = np.append(np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1)
    tp = true_positives[group_ends]
    precision = tp / (tp + false_positives[group_ends])
    recall = tp / n_pos
    return _unit(float(np.sum(np.diff(recall, prepend=0.0) * precision)))


def _voc07_ap(positive: np.ndarray, n_pos: int) -> float:
    """The devkit's 11-point interpolated AP on items already in devkit rank order."""
    true_positives = np.cumsum(positive)
    false_positives = np.cumsum(~positive)
    precision = true_positives / (false_positives + true_positives)
    ap = 0.0
    for k in range(11):
        reached = 10 * true_positives >= k * n_pos
        best = float(precision[reached].max()) if reached.any() else 0.0
        ap = ap + best / 11  # accumulated as the devkit does, then clipped
    return _unit(ap)


def _unit(value: float) -> float:
    """``value`` clipped to [0, 1] (rounding in the sums overshoots 1 by an ulp at most)."""
    return min(max(value, 0.0), 1.0)


def average_precision(labels: np.ndarray, scores: np.ndarray, method: str = "step") -> float:
    """AP of one class. ``labels`` (N,) in {1, -1, 0}; ``scores`` (N,) real; returns a float in [0, 1].

    ``method``: ``"step"`` (scikit-learn's ``average_precision_score``) or ``"voc07"`` (devkit
    11-point). Items labelled 0 are ignored. No positive item: 0.0 and an
    :class:`UndefinedAPWarning` (both references give 0).
    """
    if method not in METHODS:
        raise ValueError(f"unknown AP method {method!r}; expected one of {METHODS}")
    positive, ranked_scores = _ranked(labels, scores)
    n_pos = int(positive.sum())
    if n_pos == 0:
        warnings.warn(
            "no positive item: average precision set to 0 (as scikit-learn and the VOC devkit do)",
            UndefinedAPWarning,
            stacklevel=2,
        )
        return 0.0
    if method == "step":
        return _step_ap(positive, ranked_scores, n_pos)
    return _voc07_ap(positive, n_pos)


def average_precision_table(labels: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Per-class AP: ``labels`` (N, 20) in {1, -1, 0}, ``scores`` (N, 20) real.

    Returns 20 rows in :data:`soundsup.voc.VOC_CLASSES` order with columns ``class, ap,
    ap_voc07, n_pos, n_neg`` (AP in [0, 1]; 0 for a class without positives, with one logged
    warning naming those classes).
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    expected = (labels.shape[0], len(VOC_CLASSES)) if labels.ndim == 2 else None
    if labels.ndim != 2 or labels.shape != expected or scores.shape != labels.shape:
        raise ValueError(
            f"labels and scores must both be (N, {len(VOC_CLASSES)}); got {labels.shape} and {scores.shape}"
        )
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedAPWarning)
        for index, name in enumerate(VOC_CLASSES):
            column_labels, column_scores = labels[:, index], scores[:, index]
            rows.append(
                {
                    "class": name,
                    "ap": average_precision(column_labels, column_scores, "step"),
                    "ap_voc07": average_precision(column_labels, column_scores, "voc07"),
                    "n_pos": int((column_labels == 1).sum()),
                    "n_neg": int((column_labels == -1).sum()),
                }
            )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    empty = table.loc[table["n_pos"] == 0, "class"].tolist()
    if empty:
        log.warning(
            "no positive test item for %s: AP set to 0 (as scikit-learn and the VOC devkit do)",
            ", ".join(empty),
        )
    return table


def mean_ap(table: pd.DataFrame, column: str = "ap") -> float:
    """Mean of ``table[column]`` over the classes whose AP is defined (NaN when none is)."""
    values = table[column].to_numpy(dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")
