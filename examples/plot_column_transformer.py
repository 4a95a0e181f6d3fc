"""
Mixed numeric and categorical data with a ColumnTransformer
===========================================================

:class:`~sktriplet.TripletEmbedder` takes numeric feature rows. Tabular
data with categorical columns goes through a
:class:`~sklearn.compose.ColumnTransformer` first (scaling the numbers,
one-hot encoding the categories), exactly as for any scikit-learn model.
With ``set_output(transform="pandas")`` the whole pipeline returns a
DataFrame whose columns are ``tripletembedder0``, ``tripletembedder1``, ...

The data are synthetic (no download): customers of five segments described
by two numeric and two categorical columns, where some segments differ only
in a categorical column.
"""

# %%
# A small mixed-type table
# ------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sktriplet import TripletEmbedder
from sktriplet.evaluation.plotting import plot_embedding

rng = np.random.default_rng(0)
n = 1500
segment = rng.integers(0, 5, size=n)
df = pd.DataFrame(
    {
        "age": rng.normal(35 + 8 * (segment == 1) - 6 * (segment == 3), 6, size=n),
        "spend": rng.lognormal(3 + 0.6 * (segment == 0), 0.4, size=n),
        "channel": np.where(
            segment == 2, "store", rng.choice(["web", "app", "store"], size=n, p=[0.5, 0.4, 0.1])
        ),
        "plan": np.where(segment == 4, "premium", rng.choice(["basic", "plus"], size=n)),
    }
)
y = np.array(["young", "senior", "in-store", "thrifty", "premium"])[segment]
df.head()

# %%
# The pipeline: preprocessing, embedding, k-NN
# --------------------------------------------
preprocess = ColumnTransformer(
    [
        ("num", StandardScaler(), make_column_selector(dtype_include="number")),
        ("cat", OneHotEncoder(sparse_output=False), make_column_selector(dtype_exclude="number")),
    ]
)
embed = make_pipeline(
    preprocess, TripletEmbedder(n_components=8, max_epochs=15, random_state=0)
).set_output(transform="pandas")

X_train, X_test, y_train, y_test = train_test_split(df, y, test_size=0.3, random_state=0)
Z_test = embed.fit(X_train, y_train).transform(X_test)
Z_test.head()

# %%
# The embedding's input columns are the ColumnTransformer's output names:
print(list(embed[-1].feature_names_in_))
print(list(embed.get_feature_names_out()))

# %%
# k-NN in the embedding, against k-NN on the preprocessed columns
knn = KNeighborsClassifier(n_neighbors=5)
acc_embedding = knn.fit(embed.transform(X_train), y_train).score(Z_test, y_test)
acc_onehot = (
    make_pipeline(preprocess, KNeighborsClassifier(n_neighbors=5))
    .fit(X_train, y_train)
    .score(X_test, y_test)
)
print(f"5-NN accuracy, scaled + one-hot columns: {acc_onehot:.3f}")
print(f"5-NN accuracy, triplet embedding:        {acc_embedding:.3f}")

# %%
# A map of the test customers in the embedding (PCA of the 8 dimensions)
ax = plot_embedding(Z_test, y_test, method="pca")
plt.show()
