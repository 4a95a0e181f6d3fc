"""
Cars never seen in training, from JPEG files on disk
====================================================

Train a :class:`~sktriplet.TripletEmbedder` directly on photo files of many
sizes (Stanford Cars: 73 to 3896 px wide), then retrieve cars of *other*
models: the usual unseen-class split of deep metric learning trains on
classes 001-098 and tests on classes 099-196. Retrieval is scored with MAP@R
against raw pixels of the same 64 px images.

The files are decoded lazily, batch by batch, in data-loader workers: the
collection is never loaded into memory. This example needs the Stanford Cars
subset in ``../shared/data/stanford_cars_196x8/images`` (one folder per class,
8 photos each; not shipped with sktriplet). Set ``SKTRIPLET_CARS`` to another
folder of the same layout; without the data the script says so and stops.
It is not part of the gallery for that reason. Run it with::

    OMP_NUM_THREADS=1 python examples/cars_files.py
"""

# %%
# Find the photos
# ---------------
# ``list_image_folder`` lists ``root/<class>/<file>`` like
# ``sklearn.datasets.load_files(root, load_content=False)``: paths, integer
# labels and the class folder names, in name order. Nothing is decoded.
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
ROOT = Path(
    os.environ.get("SKTRIPLET_CARS", HERE.parent.parent / "shared/data/stanford_cars_196x8/images")
)
if not ROOT.is_dir():
    print(f"The Stanford Cars folder {ROOT} is missing; set SKTRIPLET_CARS to it. Skipped.")
    sys.exit(0)

from sktriplet.datasets import list_image_folder

paths, labels, class_names = list_image_folder(ROOT)
class_ids = np.array([int(name.split("_")[0]) for name in class_names])[labels]
train, test = class_ids <= 98, class_ids >= 99
print(
    f"{len(paths)} photos of {len(class_names)} classes: {train.sum()} to train on, "
    f"{test.sum()} of {len(np.unique(class_ids[test]))} unseen classes to search"
)

# %%
# Train on the files
# ------------------
# ``image_size=64``: ``transform`` scales each photo's shorter side to 64 px
# and cuts the centre; training cuts random crops (25-100 % of the area) and
# flips them. The photos are colour, so ``channels="auto"`` reads RGB.
from sktriplet import TripletEmbedder

emb = TripletEmbedder(image_size=64, max_epochs=20, random_state=0, device="auto")
t0 = time.perf_counter()
emb.fit(paths[train], labels[train])
fit_seconds = time.perf_counter() - t0
print(
    f"fit: {fit_seconds:.0f} s, input {emb.input_shape_}, "
    f"{emb.net_.iterator_train__num_workers} decoding workers"
)

# %%
# Search among unseen cars
# ------------------------
# Each test photo queries all other test photos; MAP@R rewards ranking the
# other photos of its model first. The baseline ranks the same 64 px
# centre crops by Euclidean distance between standardised pixels (mean and
# scale per pixel and channel, learnt on the training photos).
from sklearn.preprocessing import StandardScaler

from sktriplet.evaluation.metrics import retrieval_scores
from sktriplet.vision.transforms import ResizeCenterCrop

crop = ResizeCenterCrop(64)


def pixels(files):
    return np.stack([crop(f, 3).reshape(-1) for f in files]).astype(np.float32)


scaler = StandardScaler().fit(pixels(paths[train]))
raw = retrieval_scores(
    scaler.transform(pixels(paths[test])), labels[test], k=1, distance="euclidean"
)
t0 = time.perf_counter()
Z = emb.transform(paths[test])
transform_seconds = time.perf_counter() - t0
learnt = retrieval_scores(Z, labels[test], k=1, distance=emb.distance)

print(f"{'':<26}{'MAP@R':>8}{'P@1':>8}")
print(f"{'raw pixels (64 px, std)':<26}{raw['map_at_r']:>8.4f}{raw['precision_at_1']:>8.4f}")
print(f"{'TripletEmbedder':<26}{learnt['map_at_r']:>8.4f}{learnt['precision_at_1']:>8.4f}")
print(f"transform: {len(Z)} files in {transform_seconds:.1f} s")
