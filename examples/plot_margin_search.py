"""
Choosing the margin on classes never seen in training
=====================================================

The margin of the triplet loss (and the mining strategy) are ordinary
hyperparameters: ``GridSearchCV`` tunes them. What matters is *how* the
search scores a candidate. A triplet embedding is used to recognise classes
it was not trained on, so the fair protocol (Musgrave et al. 2020) validates
on held-out **classes**: ``GroupKFold`` with ``groups=y`` puts every class in
exactly one validation fold, and the score is a retrieval metric (MAP@R) on
that fold, which needs no classifier.

Then we look inside one fit: with ``validation_fraction`` the embedder holds
out whole classes itself and records validation MAP@R per epoch next to the
loss and the fraction of active triplets.

The search runs 50 short fits (ten candidates, five folds), which takes
minutes on a CPU; it prints one line per fit as it goes.
"""

# %%
# Grid search with class-disjoint folds
# -------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, GroupKFold

from sktriplet import TripletEmbedder
from sktriplet.evaluation.scoring import make_retrieval_scorer

X, y = load_digits(return_X_y=True)
margins = [0.05, 0.1, 0.2, 0.5, 1.0]
grid = GridSearchCV(
    TripletEmbedder(max_epochs=8, random_state=0),
    {"margin": margins, "mining": ["semihard", "hard"]},
    scoring=make_retrieval_scorer("map_at_r"),
    cv=GroupKFold(n_splits=5),
    verbose=2,  # one line per fit: progress while the search runs
)
grid.fit(X, y, groups=y)  # groups=y: each fold validates on unseen digits
print("best:", grid.best_params_, f"MAP@R on unseen classes {grid.best_score_:.3f}")

fig, ax = plt.subplots(figsize=(6, 4))
results = grid.cv_results_
for mining in ["semihard", "hard"]:
    rows = [i for i, p in enumerate(results["params"]) if p["mining"] == mining]
    ax.errorbar(
        [results["params"][i]["margin"] for i in rows],
        results["mean_test_score"][rows],
        yerr=results["std_test_score"][rows],
        marker="o",
        capsize=3,
        label=f"mining={mining!r}",
    )
ax.set_xscale("log")
ax.set_xlabel("margin (squared Euclidean distance on the unit sphere)")
ax.set_ylabel("MAP@R on held-out classes")
ax.set_title("GroupKFold(5), groups = class")
ax.legend()
fig.tight_layout()

# %%
# Inside one fit: loss, active triplets and validation MAP@R per epoch
# --------------------------------------------------------------------
# ``verbose=1`` prints the epoch table as training goes. The validation
# score of "epoch 0" is that of the untrained network, which keeps much of
# the geometry of the standardised pixels: when training on the other
# classes does not improve on it, the embedder keeps those weights and says
# so below ("kept epoch 0"). With only ten digit classes, 30 % held out
# leaves seven to train on, and on digits training on so few classes can
# rank the held-out ones worse than the pixels themselves (a known weakness
# of few-class training, not of too short a training: more epochs or a
# smaller learning rate do not change it); compare the epoch-0 and
# last-epoch scores printed below.
best = TripletEmbedder(
    **grid.best_params_,
    max_epochs=30,
    validation_fraction=0.3,
    n_iter_no_change=5,
    random_state=0,
    verbose=1,
).fit(X, y)
history = best.net_.history
epochs = history[:, "epoch"]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
axes[0].plot(epochs, history[:, "train_loss"], marker=".")
axes[0].set_title("training loss")
axes[1].plot(epochs, history[:, "train_active"], marker=".")
axes[1].set_title("active triplets (fraction)")
axes[2].plot(epochs, history[:, "valid_map_at_r"], marker=".")
axes[2].axvline(best.best_epoch_, color="grey", linestyle="--", label="kept weights")
axes[2].set_title("validation MAP@R (unseen classes)")
axes[2].legend()
for ax in axes:
    ax.set_xlabel("epoch")
fig.tight_layout()
print(
    f"stopped after {len(history)} epochs; kept epoch {best.best_epoch_} "
    f"(validation MAP@R {best.best_validation_score_:.3f}; last epoch "
    f"{history[-1, 'valid_map_at_r']:.3f}); "
    f"held-out classes: {np.unique(y[best.validation_indices_]).tolist()}"
)
plt.show()
