"""keep_freed_memory: measured with the kernel's counters (page faults, resident
memory), not the code's state.

They are read in a fresh interpreter per case: glibc's heap in a
long-lived test process may hold large free chunks left by earlier tests,
which serve a block without ``mmap`` whatever the settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from skorch.callbacks import Callback

from sktriplet import TripletEmbedder
from sktriplet.runtime import allocator
from sktriplet.runtime.allocator import allocator_tunable

PAGES = 64 * 1024 * 1024 // 4096  # a 64 MiB block, above glibc's largest mmap threshold

needs_glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc only")

PROBE = """
import json, os, resource, statistics, sys, threading, torch
from sktriplet.runtime.allocator import keep_freed_memory

def faults_per_block(rounds=6):
    # The median round: now and then glibc's heap splits a freed chunk for a
    # small request and the next block takes fresh pages, whatever the settings.
    counts = []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = torch.ones(16 * 1024 * 1024); del block  # touches every page
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return statistics.median(counts)

def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def measure_inside(out, tuned):
    out["inside"], out["tuned"] = faults_per_block(), tuned
    block = torch.ones(64 * 1024 * 1024); del block  # 256 MiB, freed
    out["held_mib"] = resident_mib()

out = {"outside": faults_per_block()}
if sys.argv[1] == "overlapping":  # the setting lasts until the last context leaves
    entered, left = threading.Event(), threading.Event()
    def inner():
        entered.wait()
        with keep_freed_memory():
            pass
        left.set()
    thread = threading.Thread(target=inner); thread.start()
    with keep_freed_memory() as tuned:
        entered.set(); left.wait()
        measure_inside(out, tuned)
    thread.join()
else:
    with keep_freed_memory() as tuned:
        measure_inside(out, tuned)
out["left_mib"] = resident_mib()
print(json.dumps(out))
"""

_ALLOCATOR_ENV = ("GLIBC_TUNABLES", "LD_PRELOAD", allocator.ENV_SWITCH)


def probe(case: str = "single", **env: str) -> dict:
    """The kernel's counts for 64 MiB blocks, in a fresh interpreter.

    Minor page faults per block outside and inside one context
    (``case="single"``) or inside an outer context that an overlapping one in
    another thread left (``"overlapping"``); resident MiB inside after freeing
    256 MiB, and after leaving.
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in _ALLOCATOR_ENV and not k.startswith("MALLOC_")
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, case], env={**base, **env}, capture_output=True, text=True,
        check=True, timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _untuned_environment(monkeypatch):
    for name in _ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)


@needs_glibc
@pytest.mark.parametrize("case", ["single", "overlapping"])
def test_freed_blocks_are_reused_inside_and_returned_after(case):
    faults = probe(case)
    assert faults["tuned"] is True
    # glibc unmaps a 64 MiB block when it is freed: every page faults anew.
    assert faults["outside"] > 0.9 * PAGES
    assert faults["inside"] < 0.05 * PAGES
    # The 256 MiB freed inside stayed resident there and went back on leaving.
    assert faults["held_mib"] - faults["left_mib"] > 0.9 * 256
    assert allocator._depth == 0


@needs_glibc
@pytest.mark.parametrize(
    ("name", "value"),
    [
        (allocator.ENV_SWITCH, "0"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"),
        ("MALLOC_TRIM_THRESHOLD_", "1000000"),
    ],
)
def test_an_allocator_chosen_by_the_environment_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert not allocator_tunable()
    faults = probe(**{name: value})
    assert faults["tuned"] is False
    assert faults["inside"] > 0.9 * PAGES
    assert abs(faults["held_mib"] - faults["left_mib"]) < 0.1 * 256


def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert not allocator_tunable()
    with allocator.keep_freed_memory() as tuned:
        assert tuned is False
        assert allocator._depth == 0


def test_unrelated_environment_does_not_stop_tuning(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # no trailing underscore: not a threshold
    assert allocator_tunable() is (allocator._glibc() is not None)


class DepthProbe(Callback):
    """Records whether training batches ran inside keep_freed_memory."""

    def initialize(self):
        self.depths = []
        return self

    def on_batch_end(self, net, training=None, **kwargs):
        if training:
            self.depths.append(allocator._depth)


@needs_glibc
def test_cpu_training_runs_inside_the_context_and_leaves_it():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8)).astype(np.float32)
    y = np.repeat(np.arange(6), 20)
    probe = DepthProbe()
    emb = TripletEmbedder(
        max_epochs=2, batch_size=24, device="cpu", random_state=0, callbacks=[("probe", probe)]
    )
    emb.fit(X, y)
    assert probe.depths and min(probe.depths) >= 1
    assert allocator._depth == 0
