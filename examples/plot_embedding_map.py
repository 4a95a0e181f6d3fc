"""
Embedding map: seen and unseen digits
=====================================

Train a :class:`~sktriplet.TripletEmbedder` on scikit-learn's 8x8 digits
0-6 only, then draw a 2-D map of the embeddings of held-out digits with
:func:`sktriplet.evaluation.plotting.plot_embedding`. Digits 7, 8 and 9 were never
seen in training; they are drawn as triangles. Clusters of their own would
mean the embedding carries over to new classes, which is what a nearest-neighbour
search over unseen identities needs. Raw pixels are shown for comparison,
and :func:`sktriplet.evaluation.plotting.plot_history` shows how training went.
"""

# %%
# Train on digits 0-6
# -------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import map_at_r
from sktriplet.evaluation.plotting import plot_embedding, plot_history

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
seen = y_train < 7
embedder = TripletEmbedder(n_components=32, max_epochs=20, random_state=0)
embedder.fit(X_train[seen], y_train[seen])

# %%
# Maps of the held-out digits
# ---------------------------
# Each class has its own colour; the classes the embedder never saw have
# triangle markers (``plot_embedding`` finds them from ``embedder.classes_``).
# Both maps are t-SNE projections of the held-out samples.
fig, (ax_raw, ax_emb) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plot_embedding(X_test, y_test, method="tsne", unseen=[7, 8, 9], ax=ax_raw, title="Raw pixels")
plot_embedding(X_test, y_test, estimator=embedder, method="tsne", ax=ax_emb, title="Embedding")
ax_raw.get_legend().remove()
plt.show()

# %%
# The same comparison in numbers: MAP@R of the held-out digits among
# themselves (leave-one-out retrieval, in [0, 1], higher is better), for the
# seen and the unseen classes separately.
unseen = y_test >= 7
Z_test = embedder.transform(X_test)
for name, rows in (("seen digits 0-6", ~unseen), ("unseen digits 7-9", unseen)):
    raw = map_at_r(X_test[rows], y_test[rows])
    emb = map_at_r(Z_test[rows], y_test[rows])
    print(f"MAP@R on {name}: raw pixels {raw:.3f}, embedding {emb:.3f}")

# %%
# Read the maps and the numbers together: with seven training classes and
# default settings the embedding tightens the digits it was trained on, but
# does not carry over to all the new ones; some unseen digits land inside
# the clusters of seen digits. Doing better on unseen classes is the subject
# of the open-set page of the documentation.

# %%
# Training curves
# ---------------
# The loss, and the fraction of mined triplets whose hinge is still active:
# as the embedding improves, fewer semi-hard triplets violate the margin.
fig = plot_history(embedder)
plt.show()

# %%
# The epoch table is also printed during ``fit`` with ``verbose=1``;
# ``verbose=2`` adds a progress bar over the batches of each epoch.
print(np.round(embedder.net_.history[:, "train_loss"], 4))
