"""
Open-set recognition: enrol new classes, reject strangers
=========================================================

A triplet embedding is trained on some classes only. New classes are then
*enrolled* with a handful of examples each -- no retraining -- and queries
are labelled with the nearest enrolled class, or rejected as *unknown* when
nothing in the gallery is close enough. The rejection threshold is
calibrated for a target false accept rate (the fraction of strangers
accepted) on validation queries, and checked on held-out ones.

Data: scikit-learn's 8x8 digits (they ship with scikit-learn). Digits 0-5
train the embedding; the gallery holds 5 examples of each of 6 and 7,
classes the network never saw; 8 and 9 are never enrolled and must be
rejected.
"""

# %%
# Train the embedding on digits 0-5
# ---------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator

from sktriplet import OpenSetKNeighborsClassifier, TripletEmbedder
from sktriplet.evaluation.neighbors import FewStrangerClassesWarning

X, y = load_digits(return_X_y=True)
rng = np.random.default_rng(0)
train = np.flatnonzero(y <= 5)
rest = np.flatnonzero(y > 5)

embedder = TripletEmbedder(max_epochs=20, device="cpu", random_state=0)
embedder.fit(X[train], y[train])

# %%
# Enrol five examples of each of 6 and 7 (new to the network)
# -----------------------------------------------------------
# ``FrozenEstimator`` keeps the trained embedder as it is: the classifier
# only embeds through it. More identities can be added later with
# ``clf.enroll(X_new, y_new)``, again without training.
enrolled = [6, 7]
gallery = np.concatenate([rng.choice(rest[y[rest] == c], size=5, replace=False) for c in enrolled])
queries = np.setdiff1d(rest, gallery)
clf = OpenSetKNeighborsClassifier(embedder=FrozenEstimator(embedder))
clf.fit(X[gallery], y[gallery])

# %%
# Calibrate the threshold for a 10 % false accept rate
# ----------------------------------------------------
# Half of the queries (6, 7, 8 and 9) calibrate, the other half is held
# out. In the labels, the never-enrolled digits stay 8 and 9;
# ``calibrate`` treats every class that is not enrolled as unknown. It holds
# the target by an upper confidence bound of the false accept rate over the
# stranger *classes*: 8 and 9, and 6 and 7 left out of the gallery in turn.
# Four classes are too few to promise 10 % on strangers of other kinds,
# and ``calibrate`` warns so (``FewStrangerClassesWarning``); here the
# held-out strangers are 8 and 9 again.
queries = rng.permutation(queries)
val, test = queries[: len(queries) // 2], queries[len(queries) // 2 :]
clf.calibrate(X[val], y[val], target_far=0.10)
cal = clf.calibration_
low, high = clf.far_interval_
print(f"threshold {cal['threshold']:.3f} (squared distance between unit embeddings)")
print(
    f"validation: FAR {cal['far']:.3f}, recall {cal['recall']:.3f}, "
    f"precision {cal['precision']:.3f}"
)
print(f"expected FAR {clf.expected_far_:.3f}, 90 % interval {low:.3f} to {high:.3f}")

# %%
# Held-out queries
# ----------------
truth = y[test]
unknown = truth >= 8
expected = np.where(unknown, -1, truth)


def report(model, name):
    pred = model.predict(X[test])
    print(
        f"{name}: held-out FAR (8 and 9 accepted) {np.mean(pred[unknown] != -1):.3f} of "
        f"{unknown.sum()}, 6 and 7 (never trained, 5 shots each) recognised "
        f"{np.mean(pred[~unknown] == truth[~unknown]):.3f} of {(~unknown).sum()}, open-set "
        f"accuracy (unknowns right when rejected) {model.score(X[test], expected):.3f}"
    )
    return pred


report(clf, "bound over classes")

# %%
# When the strangers to come are of the calibration's kinds
# ----------------------------------------------------------
# Four stranger classes leave the bound wide, so the threshold above
# accepts none of the validation strangers and rejects many known queries.
# When the strangers to come are of the kinds seen in calibration -- here
# the held-out strangers are 8 and 9 again -- the rate measured on them is
# the better guide: ``far_rule="empirical"`` holds the target on it.
warnings.filterwarnings("ignore", category=FewStrangerClassesWarning)  # said once above
clf.calibrate(X[val], y[val], target_far=0.10, far_rule="empirical")
print(f"threshold {clf.threshold_:.3f}, validation FAR {clf.calibration_['far']:.3f}")
pred = report(clf, "measured rate")

# %%
# The same protocol on raw pixels, at the same target FAR
# -------------------------------------------------------
# The baseline any embedding must beat: nearest neighbours on the pixels
# themselves (no embedder), calibrated on the same validation queries for
# the same 10 % false accept rate, by the same rule.
raw = OpenSetKNeighborsClassifier().fit(X[gallery], y[gallery])
raw.calibrate(X[val], y[val], target_far=0.10, far_rule="empirical")
report(raw, "raw pixels, measured rate")


# Calibrated thresholds land at different held-out FARs. At a *matched* FAR
# -- each method's best threshold whose held-out FAR is at most the
# embedding's -- compare how many known queries are accepted and right.
def recall_at_far(model, far):
    matched, distances = model.match(X[test])
    best = 0.0
    for threshold in np.unique(distances):
        accepted = distances <= threshold
        if np.mean(accepted[unknown]) <= far:
            best = max(best, np.mean(accepted[~unknown] & (matched[~unknown] == truth[~unknown])))
    return best


far = np.mean(pred[unknown] != -1)
print(
    f"at a matched held-out FAR of {far:.3f}: 6 and 7 recognised "
    f"{recall_at_far(clf, far):.3f} (embedding) against {recall_at_far(raw, far):.3f} (raw pixels)"
)

# %%
# Match distances and the threshold
# ---------------------------------
# Left: the distance from each held-out query to its best match, for known
# queries matched correctly, known queries matched wrongly and unknown
# queries. Right: false accept rate, its upper bound over stranger classes
# (what the target holds) and recall (detection and identification rate)
# over all thresholds, on the validation half.
labels, dist = clf.match(X[test])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
bins = np.linspace(0, dist.max(), 40)
ax1.hist(dist[~unknown & (labels == truth)], bins, alpha=0.6, label="known, right match")
ax1.hist(dist[~unknown & (labels != truth)], bins, alpha=0.6, label="known, wrong match")
ax1.hist(dist[unknown], bins, alpha=0.6, label="unknown (8, 9)")
ax1.axvline(cal["threshold"], color="k", ls="--", label="threshold: bound <= 10 %")
ax1.axvline(clf.threshold_, color="k", ls=":", label="threshold: measured FAR <= 10 %")
ax1.set_xlabel("match distance")
ax1.set_ylabel("held-out queries")
ax1.legend(fontsize=8)
curve = cal["curve"]
ax2.plot(curve["threshold"][1:], curve["far"][1:], label="false accept rate")
ax2.plot(curve["threshold"][1:], curve["far_upper"][1:], label="its upper bound")
ax2.plot(curve["threshold"][1:], curve["recall"][1:], label="recall (known, right class)")
ax2.axhline(0.10, color="grey", lw=0.8)
ax2.axvline(cal["threshold"], color="k", ls="--")
ax2.axvline(clf.threshold_, color="k", ls=":")
ax2.set_xlabel("threshold")
ax2.legend(fontsize=8)
fig.tight_layout()
plt.show()
