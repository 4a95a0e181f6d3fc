"""
Training on several processes with global mining
================================================

Launch this script with ``torchrun`` (one process per GPU, or CPU processes
over the gloo backend)::

    torchrun --standalone --nproc_per_node 2 examples/distributed_fit.py

Each process embeds its share of every global PK batch, the embeddings are
all-gathered, and triplets are mined over the global batch, so the two
processes train like one process with a batch twice as large. The script also
runs as a single process (``python examples/distributed_fit.py``), where it
trains with the global batch directly. The MAP@R of the two runs is similar
but not equal: the default network's batch norm normalises each process's
shard (``docs/scaling.md`` has the numbers).

``accelerate launch --num_processes 2 examples/distributed_fit.py`` sets the
same environment variables as ``torchrun`` and works the same way.
"""

# %%
# Join the process group that the launcher set up
# -----------------------------------------------
# ``init_distributed`` reads ``RANK``, ``WORLD_SIZE`` and friends, picks NCCL
# with CUDA and gloo without, and makes GPU ``LOCAL_RANK`` this process's
# device. Without a launcher it returns ``(0, 1)`` and does nothing.
import time

import torch
from sklearn.datasets import load_digits

from sktriplet import TripletEmbedder
from sktriplet.training.distributed import init_distributed

rank, world_size = init_distributed()
torch.set_num_threads(1)  # one CPU thread per process: no oversubscription

# %%
# Every process loads the whole data set
# --------------------------------------
# The sampler draws the same global batches on every process (same seed) and
# each process keeps its own slice, so all of them need all the data (use a
# memory-mapped array for large image sets). Train on digits 0-6 and measure
# retrieval on 7-9, classes the network never saw.
X, y = load_digits(return_X_y=True)
train, test = y < 7, y >= 7
GLOBAL_BATCH = 128

# %%
# Fit: ``batch_size`` is per process
# ----------------------------------
# ``fit`` sees the process group and trains the network inside
# ``DistributedDataParallel``; print from rank 0 only.
emb = TripletEmbedder(
    batch_size=GLOBAL_BATCH // world_size,
    samples_per_class=8,
    max_epochs=20,
    lr=3e-3,
    device="auto",
    random_state=0,
    verbose=0,
)
start = time.perf_counter()
emb.fit(X[train], y[train])
seconds = time.perf_counter() - start

# %%
# After ``fit``, every process holds the same plain (unwrapped) network
# ---------------------------------------------------------------------
score = emb.score(X[test], y[test])
if rank == 0:
    print(
        f"processes={world_size} global_batch={GLOBAL_BATCH} "
        f"net={type(emb.net_).__name__} fit={seconds:.1f}s "
        f"MAP@R(unseen digits 7-9)={score:.3f}"
    )

if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
