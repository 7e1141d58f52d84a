"""Average precision: scikit-learn's step AP, the VOC2007 devkit's 11-point AP, label 0 handling."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from soundsup.metrics import UndefinedAPWarning, average_precision, average_precision_table, mean_ap
from soundsup.names import VOC_CLASSES


def devkit_voc07(labels, scores):
    """A line-by-line port of VOCevalcls.m (VOC2007), label-0 items kept in the ranking.

    ``[so,si]=sort(-out)`` is MATLAB's stable sort; 0/0 precision is NaN and ``max`` skips it.
    Thresholds are the decimals k/10 (see soundsup.metrics on MATLAB's 0:0.1:1).
    """
    gt = np.asarray(labels)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.cumsum(gt[order] > 0)
    fp = np.cumsum(gt[order] < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = tp / np.sum(gt > 0)  # no positive: 0/0 = NaN, which passes no threshold
        prec = tp / (fp + tp)
    ap = 0.0
    for t in [k / 10 for k in range(11)]:
        candidates = prec[rec >= t]
        candidates = candidates[~np.isnan(candidates)]
        p = candidates.max() if len(candidates) else 0.0
        ap = ap + p / 11
    return ap


def random_case(rng, n, tie_levels=None, zero_fraction=0.2):
    labels = rng.choice([1, -1], size=n, p=[0.3, 0.7])
    labels[rng.random(n) < zero_fraction] = 0
    if not (labels == 1).any():
        labels[0] = 1
    scores = rng.normal(size=n) * 10
    if tie_levels is not None:
        scores = rng.integers(0, tie_levels, size=n).astype(np.float64)
    return labels, scores


@pytest.mark.parametrize("tie_levels", [None, 2, 4, 12])
def test_step_ap_is_scikit_learn_average_precision(tie_levels):
    rng = np.random.default_rng(tie_levels or 0)
    for n in (1, 2, 5, 17, 60, 400):
        labels, scores = random_case(rng, n, tie_levels)
        keep = labels != 0
        if not (labels[keep] == 1).any():
            continue
        expected = average_precision_score(labels[keep] == 1, scores[keep])
        assert average_precision(labels, scores) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_large_logits_are_ranked_exactly():
    # Summed logits of 10 test crops reach tens; a sigmoid in float32 would saturate them to 1.
    labels = np.array([1, -1, 1, -1, -1, 1])
    scores = np.array([40.0, 40.5, 41.0, 39.0, 38.0, 60.0], dtype=np.float32)
    expected = average_precision_score(labels == 1, scores)
    assert average_precision(labels, scores) == pytest.approx(expected, rel=1e-12)
    assert expected < 1
    shifted = average_precision(labels, scores.astype(np.float64) * 1e6 - 3e7)
    assert shifted == pytest.approx(expected, rel=1e-12)


def test_voc07_hand_computed():
    # Ranked: + - + - -; two positives: rec .5 .5 1 1 1, prec 1 .5 2/3 .5 .4.
    # t = 0 .. 0.5 take max prec 1; t = 0.6 .. 1 take 2/3.
    labels = np.array([1, -1, 1, -1, -1])
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert average_precision(labels, scores, "voc07") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, rel=1e-15)
    assert average_precision(labels, scores, "step") == pytest.approx((1 + 2 / 3) / 2, rel=1e-15)


def test_voc07_thresholds_are_exact_decimals():
    # 10 positives: 3 on top, 7 negatives, 7 positives. Recall 0.3 reaches the threshold 0.3.
    labels = np.array([1] * 3 + [-1] * 7 + [1] * 7)
    scores = -np.arange(len(labels), dtype=np.float64)
    expected = (4 * 1.0 + 7 * 10 / 17) / 11
    assert average_precision(labels, scores, "voc07") == pytest.approx(expected, rel=1e-15)


def test_voc07_ties_keep_input_order():
    scores = np.zeros(2)
    assert average_precision(np.array([-1, 1]), scores, "voc07") == pytest.approx(0.5)
    assert average_precision(np.array([1, -1]), scores, "voc07") == pytest.approx(1.0)
    # The step AP groups the tie: one threshold, precision 1/2 at recall 1, either order.
    assert average_precision(np.array([-1, 1]), scores) == average_precision(np.array([1, -1]), scores) == 0.5


def test_voc07_matches_devkit_port_with_zero_labels_in_the_ranking():
    rng = np.random.default_rng(7)
    for n in (3, 10, 40, 150):
        for tie_levels in (None, 3):
            labels, scores = random_case(rng, n, tie_levels, zero_fraction=0.3)
            labels[np.argmax(scores)] = 0  # a difficult item ranked first: 0/0 precision in the devkit
            if not (labels == 1).any():
                labels[np.argmin(scores)] = 1
            expected = min(devkit_voc07(labels, scores), 1.0)  # the devkit's sum can reach 1 + 1 ulp
            assert average_precision(labels, scores, "voc07") == expected


def test_zero_labels_are_ignored():
    labels = np.array([1, -1, 1, -1, 1, -1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    with_difficult = np.array([0, 1, -1, 0, 1, -1, 1, -1, 0])
    difficult_scores = np.array([2.0, 0.9, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, -5.0])
    for method in ("step", "voc07"):
        assert average_precision(with_difficult, difficult_scores, method) == average_precision(
            labels, scores, method
        )


def test_all_scores_equal_gives_the_positive_rate():
    labels = np.array([1, -1, -1, 0, 1, -1, -1, -1])
    assert average_precision(labels, np.full(8, 3.5)) == pytest.approx(2 / 7)


def test_no_positive_gives_zero_like_scikit_learn_and_the_devkit():
    labels, scores = np.array([-1, -1, 0, -1]), np.array([1.0, 2.0, 3.0, 2.0])
    with pytest.warns(UserWarning, match="No positive class"):
        reference = average_precision_score(labels[labels != 0] == 1, scores[labels != 0])
    assert reference == 0 and devkit_voc07(labels, scores) == 0
    with pytest.warns(UndefinedAPWarning, match="set to 0"):
        assert average_precision(labels, scores) == 0.0
    with pytest.warns(UndefinedAPWarning, match="set to 0"):
        assert average_precision(labels, scores, "voc07") == 0.0
    with pytest.warns(UndefinedAPWarning):  # only difficult items: nothing to rank at all
        assert average_precision(np.array([0, 0]), np.array([1.0, 2.0]), "voc07") == 0.0


@pytest.mark.parametrize("n_pos", [1, 2, 3, 6, 7, 10, 11, 13, 49, 100, 333, 1000])
def test_a_perfect_ranking_is_exactly_one(n_pos):
    # eleven additions of 1/11 give 1.0000000000000002; the tables refuse AP above 1
    labels = np.array([1] * n_pos + [-1] * 17 + [0] * 3)
    scores = -np.arange(len(labels), dtype=np.float64)
    assert average_precision(labels, scores, "voc07") == 1.0
    assert average_precision(labels, scores, "step") == 1.0
    reference = average_precision_score(labels[labels != 0] == 1, scores[labels != 0])
    assert reference == pytest.approx(1.0, abs=1e-15)  # scikit-learn's sum may fall an ulp short
    tied_on_top = np.where(labels == 1, 5.0, scores)  # all positives tied above every negative
    assert average_precision(labels, tied_on_top) == average_precision(labels, tied_on_top, "voc07") == 1.0


def adversarial_cases(rng):
    """(labels, scores): reversed and interleaved rankings, all ties, float32 neighbours, huge and
    tiny magnitudes, a lone item, heavy ties at every size."""
    yield np.array([1]), np.array([0.0])
    yield np.array([-1, 1]), np.array([1.0, 0.0])
    for n_pos, n_neg in ((1, 1), (5, 500), (500, 5), (37, 37)):
        labels = np.array([-1] * n_neg + [1] * n_pos)
        yield labels, -np.arange(len(labels), dtype=np.float64)  # worst ranking
        yield labels, np.zeros(len(labels))  # one big tie
        yield labels, np.resize([1.0, 0.0], len(labels))  # two tie groups, alternating
    base = np.float32(1.0)
    neighbours = np.array([base + i * np.finfo(np.float32).eps for i in range(40)], dtype=np.float32)
    yield rng.choice([1, -1], 40), rng.permutation(neighbours)
    yield rng.choice([1, -1], 60), rng.choice([1e300, -1e300, 1e-300, -1e-300, 0.0], 60)
    for n in (3, 30, 300, 3000):
        for levels in (1, 2, 3, n // 3 + 1):
            labels = rng.choice([1, -1, 0], n, p=[0.5, 0.4, 0.1])
            yield labels, rng.integers(0, levels, n).astype(np.float64)


def test_step_ap_matches_scikit_learn_on_adversarial_inputs_and_both_stay_in_the_unit_interval():
    rng = np.random.default_rng(11)
    checked = 0
    for labels, scores in adversarial_cases(rng):
        keep = labels != 0
        if not (labels[keep] == 1).any():
            continue
        ours = average_precision(labels, scores)
        assert ours == pytest.approx(
            average_precision_score(labels[keep] == 1, scores[keep]), rel=1e-12, abs=1e-15
        )
        eleven = average_precision(labels, scores, "voc07")
        assert eleven == pytest.approx(devkit_voc07(labels, scores), rel=1e-15, abs=1e-15)
        assert 0.0 <= ours <= 1.0 and 0.0 <= eleven <= 1.0
        checked += 1
    assert checked == 32


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="1, -1 or 0"):
        average_precision(np.array([1, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([1, -1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="same length"):
        average_precision(np.array([1, -1]), np.array([0.1]))
    with pytest.raises(ValueError, match="method"):
        average_precision(np.array([1, -1]), np.array([0.1, 0.2]), "voc12")


def test_table_rows_columns_and_mean(caplog):
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array([1, -1, 0], dtype=np.int8), size=(50, 20), p=[0.3, 0.6, 0.1])
    labels[:, 5] = -1  # bus: no positive test image
    labels[:, 9] = np.where(labels[:, 9] == 1, 0, labels[:, 9])  # cow: positives only difficult
    scores = rng.normal(size=(50, 20)).astype(np.float32) * 20
    with warnings.catch_warnings(), caplog.at_level("WARNING", logger="soundsup.metrics"):
        warnings.simplefilter("error")  # one logged warning for the table, no per-class warnings
        table = average_precision_table(labels, scores)
    assert [record.getMessage() for record in caplog.records] == [
        "no positive test item for bus, cow: AP set to 0 (as scikit-learn and the VOC devkit do)"
    ]
    assert list(table.columns) == ["class", "ap", "ap_voc07", "n_pos", "n_neg"]
    assert tuple(table["class"]) == VOC_CLASSES
    assert table["n_pos"].tolist() == (labels == 1).sum(axis=0).tolist()
    assert table["n_neg"].tolist() == (labels == -1).sum(axis=0).tolist()
    assert (table.loc[[5, 9], ["ap", "ap_voc07"]] == 0).all().all()
    assert table["ap"].between(0, 1).all() and table["ap_voc07"].between(0, 1).all()
    for index in range(20):
        keep = labels[:, index] != 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scikit-learn's own "No positive class"
            expected = average_precision_score(labels[keep, index] == 1, scores[keep, index])
        assert table.loc[index, "ap"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert table.loc[index, "ap_voc07"] == pytest.approx(devkit_voc07(labels[:, index], scores[:, index]))
    assert mean_ap(table) == pytest.approx(table["ap"].mean()) and not np.isnan(mean_ap(table))
    assert mean_ap(table, "ap_voc07") == pytest.approx(table["ap_voc07"].mean())
    old = table.assign(ap=table["ap"].where(table["n_pos"] > 0))  # an AP file from before: NaN
    assert mean_ap(old) == pytest.approx(table.drop(index=[5, 9])["ap"].mean())


def test_table_refuses_wrong_shapes_and_mean_of_nothing_is_nan():
    with pytest.raises(ValueError, match=r"\(N, 20\)"):
        average_precision_table(np.ones((4, 19)), np.ones((4, 19)))
    with pytest.raises(ValueError, match=r"\(N, 20\)"):
        average_precision_table(np.ones((4, 20)), np.ones((5, 20)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(mean_ap(pd.DataFrame({"ap": [np.nan, np.nan]})))
