"""Reference solutions of lessons/13_medical_evaluation.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 13.1]
def rates(cm):
    """(sensitivity, specificity, precision) of class 1 from cm[true, predicted]."""
    (tn, fp), (fn, tp) = cm
    return tp / (tp + fn), tn / (tn + fp), tp / (tp + fp)

# %% [wrong 13.1]
def rates(cm):
    """Reads the matrix transposed (predicted on the rows): swaps FP and FN."""
    (tn, fn), (fp, tp) = cm
    return tp / (tp + fn), tn / (tn + fp), tp / (tp + fp)

# %% [solution 13.2]
def auc_by_pairs(y, scores):
    """P(score of a random positive > score of a random negative), ties counted 1/2."""
    pos, neg = scores[y == 1], scores[y == 0]
    higher = (pos[:, None] > neg[None, :]).sum()          # (P, N) comparisons
    ties = (pos[:, None] == neg[None, :]).sum()
    return (higher + 0.5 * ties) / (pos.size * neg.size)

# %% [wrong 13.2]
def auc_by_pairs(y, scores):
    """Ignores ties: a tie counts as a loss."""
    pos, neg = scores[y == 1], scores[y == 0]
    return (pos[:, None] > neg[None, :]).mean()

# %% [solution 13.3]
def threshold_for_sensitivity(y, scores, target=0.9):
    """The largest observed score t with mean(scores[y == 1] >= t) >= target."""
    positives = np.sort(scores[y == 1])[::-1]              # highest first
    needed = int(np.ceil(target * positives.size - 1e-9))  # positives that must stay above t
    return float(positives[max(needed, 1) - 1])

# %% [wrong 13.3]
def threshold_for_sensitivity(y, scores, target=0.9):
    """A quantile of the positives' scores: interpolated, not an observed score."""
    return float(np.quantile(scores[y == 1], 1 - target))

# %% [solution 13.4]
def wilson(k, n, z=1.96):
    """The Wilson score interval (low, high) of the proportion k / n."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

# %% [wrong 13.4]
def wilson(k, n, z=1.96):
    """The Wald interval: width zero at k = n."""
    p = k / n
    half = z * np.sqrt(p * (1 - p) / n)
    return p - half, p + half

# %% [solution 13.5]
def split_by_patient(patient_ids, test_fraction, seed):
    """is_test, a boolean array with one entry per image; whole patients on each side."""
    patients = np.unique(patient_ids)
    chosen = np.random.default_rng(seed).permutation(patients)[:round(test_fraction * patients.size)]
    return np.isin(patient_ids, chosen)

# %% [wrong 13.5]
def split_by_patient(patient_ids, test_fraction, seed):
    """Splits the images, not the patients: the leak itself."""
    rng = np.random.default_rng(seed)
    return rng.random(len(patient_ids)) < test_fraction
