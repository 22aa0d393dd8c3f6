"""Tests for nnlite.metrics on hand-computed cases (skewed medical data in mind)."""
import json
import warnings

import numpy as np
import pytest

from nnlite import metrics

# six samples, three classes; worked out by hand below
Y_TRUE = np.array([0, 1, 2, 2, 1, 0])
Y_PRED = np.array([0, 2, 2, 2, 1, 1])
#             predicted 0  1  2
CONFUSION = [[1, 1, 0],    # true 0
             [0, 1, 1],    # true 1
             [0, 0, 2]]    # true 2
# per class (one-vs-rest): TP = [1, 1, 2], FP = [0, 1, 1], FN = [1, 1, 0], TN = [4, 3, 3]


def no_warnings():
    """Any RuntimeWarning (e.g. 0/0 -> NaN) fails the test."""
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("error")
    return w


def test_accuracy_and_confusion_matrix():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CONFUSION)
    np.testing.assert_array_equal(metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4)[:3, :3], CONFUSION)
    assert metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4)[3].sum() == 0


def test_scores_and_probabilities_as_predictions():
    scores = np.eye(3)[Y_PRED] * 2.0 - 0.5                 # (N, K) scores: argmax is taken
    assert metrics.accuracy(Y_TRUE, scores) == pytest.approx(4 / 6)
    y = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.7, 0.5, 0.51])                     # probabilities of class 1, >= 0.5 is 1
    assert metrics.accuracy(y, p) == 0.75                    # predictions [0, 1, 1, 1]
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p[:, None]), [[1, 1], [0, 2]])
    assert metrics.accuracy(np.eye(2)[y], y.astype(float)) == 1.0   # one-hot truth, float labels


def test_precision_recall_f1_specificity_by_hand():
    precision, recall, f1 = metrics.precision_recall_f1(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(precision, [1 / 1, 1 / 2, 2 / 3])      # TP / (TP + FP)
    np.testing.assert_allclose(recall, [1 / 2, 1 / 2, 2 / 2])         # TP / (TP + FN)
    np.testing.assert_allclose(f1, [2 / 3, 2 / 4, 4 / 5])             # 2TP / (2TP + FP + FN)
    np.testing.assert_allclose(metrics.specificity(Y_TRUE, Y_PRED), [4 / 4, 3 / 4, 3 / 4])  # TN / (TN + FP)
    # F1 is the harmonic mean of precision and recall
    np.testing.assert_allclose(f1, 2 * precision * recall / (precision + recall))


def test_binary_specificity_is_recall_of_the_other_class():
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0, 1, 0, 0, 1, 0])
    _, recall, _ = metrics.precision_recall_f1(y, p)
    spec = metrics.specificity(y, p)
    assert spec[1] == recall[0] == 0.75 and spec[0] == recall[1] == 0.5


def test_class_with_no_positives_gives_documented_value_not_nan():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 1, 1, 1])
    w = no_warnings()
    try:
        precision, recall, f1 = metrics.precision_recall_f1(y_true, y_pred, num_classes=3)
        spec = metrics.specificity(y_true, y_pred, num_classes=3)
        report = metrics.classification_report(y_true, y_pred, num_classes=3)
        p1, r1, f11 = metrics.precision_recall_f1(y_true, y_pred, num_classes=3, zero_division=1.0)
    finally:
        w.__exit__(None, None, None)
    # class 2 never occurs and is never predicted: its ratios are 0/0 -> zero_division (0.0)
    assert (precision[2], recall[2], f1[2]) == (0.0, 0.0, 0.0)
    assert (p1[2], r1[2], f11[2]) == (1.0, 1.0, 1.0)
    assert spec[2] == 1.0                       # TN = 4, FP = 0: well defined
    for arr in (precision, recall, f1, spec):
        assert np.isfinite(arr).all()
    assert report["2"]["support"] == 0 and np.isfinite(report["macro avg"]["f1"])
    # a batch of only negatives: specificity of the negatives' class has no negatives either
    only = metrics.specificity(np.zeros(3, int), np.zeros(3, int), num_classes=2, zero_division=0.0)
    np.testing.assert_array_equal(only, [0.0, 1.0])
    # ROC of a set with no positives is undefined: a clear error
    with pytest.raises(ValueError, match="ROC needs both classes in y_true, got 0 positives"):
        metrics.roc_auc(np.zeros(4, int), np.array([0.1, 0.2, 0.3, 0.4]))


def test_classification_report():
    report = metrics.classification_report(Y_TRUE, Y_PRED, class_names=["normal", "benign", "malignant"])
    report = json.loads(json.dumps(report))                 # JSON-serialisable
    assert report["malignant"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                   "specificity": 0.75, "support": 2}
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro avg"]["recall"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert report["weighted avg"]["precision"] == pytest.approx((1.0 * 2 + 0.5 * 2 + 2 / 3 * 2) / 6)
    assert report["confusion_matrix"] == CONFUSION
    with pytest.raises(ValueError, match="class_names has 2 names for 3 classes"):
        metrics.classification_report(Y_TRUE, Y_PRED, class_names=["a", "b"])


# ----------------------------------------------------------------------- ROC
def test_roc_curve_and_auc_by_hand():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr, thresholds = metrics.roc_curve(y, s)
    np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    # positives beat negatives in 3 of the 4 pairs
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)


def test_auc_with_ties():
    assert metrics.roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5     # all equal: chance
    # pairs (pos, neg): (0.5, 0.5) tie = 1/2, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1 -> 3.5 / 4
    y, s = np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])
    assert metrics.roc_auc(y, s) == pytest.approx(0.875)
    fpr, tpr, thresholds = metrics.roc_curve(y, s)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.5, 0.2])       # one step per distinct score
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])                   # the tie: a diagonal segment
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    # the order of tied samples does not matter
    assert metrics.roc_auc(y[::-1], s[::-1]) == pytest.approx(0.875)


def test_auc_equals_mann_whitney_on_tied_random_scores():
    rng = np.random.default_rng(0)
    y = (rng.random(60) < 0.3).astype(int)
    s = np.round(rng.random(60) + 0.4 * y, 1)               # rounded: many ties
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.roc_auc(y, s) == pytest.approx(wins / (pos.size * neg.size), rel=1e-12)
    assert metrics.roc_auc(y, -s) == pytest.approx(1 - wins / (pos.size * neg.size), rel=1e-12)


def test_roc_bad_input():
    with pytest.raises(ValueError, match="must be binary"):
        metrics.roc_auc(np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"got \(3,\) and \(2,\)"):
        metrics.roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="0 negatives"):
        metrics.roc_curve(np.ones(3, int), np.array([0.1, 0.2, 0.3]))


# ------------------------------------------------- specificity at sensitivity
Y_VAL = np.array([1, 1, 1, 1, 0, 0, 0, 0])
S_VAL = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1])
Y_TEST = np.array([1, 1, 0, 0, 0, 1])
S_TEST = np.array([0.95, 0.5, 0.8, 0.3, 0.65, 0.72])


def test_threshold_at_sensitivity_by_hand():
    # validation positives score 0.9, 0.8, 0.7, 0.3: the largest threshold keeping 3 of 4 is 0.7
    assert metrics.threshold_at_sensitivity(Y_VAL, S_VAL, 0.75) == 0.7
    assert metrics.threshold_at_sensitivity(Y_VAL, S_VAL, 0.5) == 0.8
    assert metrics.threshold_at_sensitivity(Y_VAL, S_VAL, 1.0) == 0.3     # every positive
    assert metrics.sensitivity_specificity(Y_VAL, S_VAL, 0.7) == (0.75, 1.0)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"target sensitivity must be in \(0, 1\]"):
            metrics.threshold_at_sensitivity(Y_VAL, S_VAL, bad)


def test_specificity_at_sensitivity_threshold_from_validation_applied_to_test():
    point = metrics.specificity_at_sensitivity(Y_VAL, S_VAL, Y_TEST, S_TEST, target=0.75)
    assert point.threshold == 0.7
    # on test, score >= 0.7: positives 0.95, 0.72 of (0.95, 0.5, 0.72); negatives 0.3, 0.65 of 3 kept out
    assert point.sensitivity == pytest.approx(2 / 3) and point.specificity == pytest.approx(2 / 3)
    # choosing the threshold on the test set itself would have given another (optimistic) answer
    own = metrics.threshold_at_sensitivity(Y_TEST, S_TEST, 0.75)
    assert own == 0.5 and metrics.sensitivity_specificity(Y_TEST, S_TEST, own) == (1.0, pytest.approx(1 / 3))
    assert point._asdict() == {"threshold": 0.7, "sensitivity": pytest.approx(2 / 3),
                               "specificity": pytest.approx(2 / 3)}


# ----------------------------------------------------------------- others
def test_overfitting_ratio():
    assert metrics.overfitting_ratio(0.9, 0.75) == pytest.approx(1.2)
    assert metrics.overfitting_ratio(0.8, 0.8) == 1.0
    with pytest.raises(ValueError, match="val_acc > 0"):
        metrics.overfitting_ratio(0.9, 0.0)
    with pytest.raises(ValueError, match="train_acc >= 0"):
        metrics.overfitting_ratio(-0.1, 0.5)


def test_iou_and_pixel_accuracy_binary():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    true = np.array([[1, 0, 0], [0, 1, 1]])
    assert metrics.iou(pred, true) == 0.5                      # intersection 2, union 4
    assert metrics.iou(pred.astype(bool), true.astype(bool)) == 0.5
    assert metrics.pixel_accuracy(pred, true) == pytest.approx(4 / 6)
    assert metrics.iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0          # both empty: documented
    assert metrics.iou(np.zeros((2, 2)), np.zeros((2, 2)), empty=0.0) == 0.0
    assert metrics.iou(np.ones((2, 2)), np.zeros((2, 2))) == 0.0
    with pytest.raises(ValueError, match="must be binary"):
        metrics.iou(np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="must match"):
        metrics.iou(np.zeros((2, 2)), np.zeros((2, 3)))


def test_iou_per_class_label_masks():
    pred = np.array([[0, 0, 1], [2, 2, 1]])
    true = np.array([[0, 1, 1], [2, 0, 1]])
    # class 0: pred {00,01} true {00,11} -> 1/3; class 1: pred {02,12} true {01,02,12} -> 2/3;
    # class 2: pred {10,11} true {10} -> 1/2; class 3: absent from both -> empty (1.0)
    np.testing.assert_allclose(metrics.iou(pred, true, num_classes=4), [1 / 3, 2 / 3, 1 / 2, 1.0])
    assert metrics.pixel_accuracy(pred, true) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="out of range"):
        metrics.iou(pred, true, num_classes=2)


def test_bad_label_inputs():
    with pytest.raises(ValueError, match="y_true has 3 samples, y_pred 2"):
        metrics.accuracy(np.array([0, 1, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="at least one sample"):
        metrics.accuracy(np.array([], int), np.array([], int))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        metrics.accuracy(np.array([0, 1]), np.array([-0.3, 2.5]))
    with pytest.raises(ValueError, match="labels must be >= 0"):
        metrics.confusion_matrix(np.array([0, -1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="label 2 out of range for num_classes=2"):
        metrics.confusion_matrix(np.array([0, 2]), np.array([0, 1]), num_classes=2)


# ----------------------------------------------- per-image segmentation scores
def test_dice_by_hand_and_edge_cases():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    true = np.array([[1, 0, 0], [0, 1, 1]])
    assert metrics.dice(pred, true) == pytest.approx(2 * 2 / (3 + 3))
    iou = metrics.iou(pred, true)
    assert metrics.dice(pred, true) == pytest.approx(2 * iou / (1 + iou))
    assert metrics.dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0             # both empty: agree
    assert metrics.dice(np.zeros((2, 2)), np.zeros((2, 2)), empty=0.0) == 0.0
    assert metrics.dice(np.zeros((2, 2)), np.ones((2, 2))) == 0.0              # nothing predicted
    assert metrics.dice(np.ones((2, 2)), np.zeros((2, 2))) == 0.0              # lesion invented


def test_segmentation_scores_per_image_with_every_edge_case():
    true = np.zeros((4, 1, 2, 3), dtype=bool)
    pred = np.zeros_like(true)
    true[0, 0, 0, :2] = True; pred[0, 0, 0, 1:] = True      # overlap 1, union 3
    # image 1: both empty; image 2: lesion missed (empty prediction); image 3: false lesion
    true[2, 0, 1, 1] = True
    pred[3, 0, :, 0] = True
    s = metrics.segmentation_scores(pred, true)
    np.testing.assert_allclose(s["iou"], [1 / 3, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(s["dice"], [2 / 4, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(s["pixel_accuracy"], [4 / 6, 1.0, 5 / 6, 4 / 6])
    np.testing.assert_array_equal(s["true_pixels"], [2, 0, 1, 0])
    np.testing.assert_array_equal(s["pred_pixels"], [2, 0, 0, 2])
    for i in range(4):                                       # the same as the whole-array metrics
        assert s["iou"][i] == metrics.iou(pred[i], true[i])
        assert s["dice"][i] == metrics.dice(pred[i], true[i])
        assert s["pixel_accuracy"][i] == metrics.pixel_accuracy(pred[i], true[i])
    assert metrics.segmentation_scores(pred, true, empty=0.0)["iou"][1] == 0.0
    with pytest.raises(ValueError, match="must be binary"):
        metrics.segmentation_scores(pred.astype(int) * 3, true)


def test_lesions_found_counts_only_images_with_a_lesion():
    ious = np.array([0.9, 0.5, 0.2, 1.0, 0.51])
    true_pixels = np.array([10, 5, 3, 0, 7])                 # image 3 has no lesion: not counted
    assert metrics.lesions_found(ious, true_pixels) == (2, 4)   # 0.5 itself is not "above 0.5"
    assert metrics.lesions_found(ious, true_pixels, threshold=0.1) == (4, 4)
    assert metrics.lesions_found(np.zeros(2), np.zeros(2)) == (0, 0)
    with pytest.raises(ValueError, match="must match"):
        metrics.lesions_found(ious, true_pixels[:3])
