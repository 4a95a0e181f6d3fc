"""
Learning from judgements only
=============================

Many collections come without class labels, only with judgements that a
sample ``a`` is more like ``p`` than like ``n``: clicks, purchases, human
comparisons, known duplicates. :class:`~sktriplet.TripletEmbedder` learns
from such triplets with ``triplets=True``. Here the judgements are made from
scikit-learn's digits (two samples of one digit and one of another), the
labels are then put away, and the triplet-trained embedding is compared with
one trained on the labels, on digits neither has seen.
"""

# %%
# Triplets instead of labels
# --------------------------
# Hold out 30 % of the digits for testing. From the other 70 %, draw 6,000
# random triplets ``(anchor, positive, negative)`` as row numbers: the anchor
# and the positive share a digit, the negative shows another one. Training
# sees only these rows of indices and the images they point to.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import map_at_r
from sktriplet.evaluation.plotting import plot_embedding

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def random_triplets(labels, n, seed):
    """``n`` index triplets with labels[a] == labels[p] != labels[n] and a != p."""
    rng = np.random.default_rng(seed)
    a, p, neg = rng.integers(len(labels), size=(3, 30 * n))
    valid = (labels[a] == labels[p]) & (a != p) & (labels[neg] != labels[a])
    return np.stack([a, p, neg], axis=1)[valid][:n]


triplets = random_triplets(y_train, 6000, seed=0)
print(triplets[:3], triplets.shape)

# %%
# Train on the triplets
# ---------------------
# ``samples=X_train`` holds what the indices point to; ``fit`` takes the
# triplets and no ``y``. Each batch holds 128 triplets and embeds each of
# their distinct samples once. The defaults of triplet mode
# (``mining="auto"``, ``margin="auto"``) train on the triplets as given
# (``mining_ == "none"``) with margin 1.0, which keeps the many easy random
# triplets contributing: the settings that came closest to the label-trained
# embedding in ``benchmarks/bench_triplets.py`` (mining among the batch's
# negatives picks samples of the anchor's own digit, given as the negatives
# of other triplets).
from_triplets = TripletEmbedder(triplets=True, samples=X_train, max_epochs=20, random_state=0)
from_triplets.fit(triplets)

# The reference: the same network trained on the labels.
from_labels = TripletEmbedder(random_state=0).fit(X_train, y_train)

# %%
# Compare on unseen samples
# -------------------------
# MAP@R ranks the held-out digits among themselves (leave-one-out retrieval,
# in ``[0, 1]``, higher is better). ``score`` of a triplet-trained model is
# the triplet accuracy: here, on new triplets of held-out digits, given as
# triplet rows ``(n_triplets, 3, 64)``.
test_triplets = X_test[random_triplets(y_test, 2000, seed=1)]
raw = map_at_r(X_test, y_test)
mine = map_at_r(from_triplets.transform(X_test), y_test)
ref = map_at_r(from_labels.transform(X_test), y_test)
print(f"MAP@R on held-out digits: raw pixels {raw:.3f}, trained on labels {ref:.3f},")
print(f"  trained on triplets only {mine:.3f} ({mine / ref:.0%} of the label-trained)")
print(f"triplet accuracy on held-out triplets: {from_triplets.score(test_triplets):.3f}")

# %%
# Maps of the held-out digits
# ---------------------------
# t-SNE maps of the two embeddings of the test digits, coloured by the
# labels the triplet-trained model never saw.
fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plot_embedding(
    X_test, y_test, estimator=from_triplets, method="tsne", ax=ax_t, title="Trained on triplets"
)
plot_embedding(
    X_test, y_test, estimator=from_labels, method="tsne", ax=ax_l, title="Trained on labels"
)
ax_t.get_legend().remove()
plt.show()

# %%
# A caveat for model selection: with ``samples=``, cross-validation splits
# the triplets while the samples stay whole, so a test triplet may reuse
# training samples and score too well. To measure unseen samples, split the
# samples first, as done here (``docs/triplets.md``, "Cross-validation and
# leakage").
