"""How much slower are default fits when other processes keep the cores busy, and what fixes it?

Question (issue 30, item 2): a default image fit or a pretrained-backbone fit
was seen to take 4-9x longer with the default threads than with
``OMP_NUM_THREADS=1`` on a machine whose cores other jobs kept busy, and
``GridSearchCV(n_jobs=2)`` on 2 cores asks for every core in every fit. Is
it torch's OpenMP threads waiting for cores the scheduler gives to others,
data-loader workers competing with the compute threads, or both, and which
setting removes it?

Every configuration runs in a fresh Python process (so environment
variables read when the OpenMP runtime loads take effect), which prints the
wall time and the CPU time of its fit alone (imports and data loading not
counted). ``--loads busy`` starts ``--busy`` processes that spin
(``while True: pass``) before the runs and kills them after; ``none`` adds
nothing (the machine may still be shared: the load average is printed).
Configurations alternate within each repeat. Workloads:

* ``image``: ``TripletEmbedder(max_epochs=2).fit`` on 1280 MNIST digits
  (28 x 28 arrays; the default ``ConvEmbedder``).
* ``backbone``: ``TripletEmbedder(module=BackboneEmbedder,
  module__backbone="efficientnet_lite0", image_size=128, max_epochs=10)``
  on the faces94 files (292 JPEGs; the frozen backbone's features are
  computed once, in data-loader workers, and the head trains on them).
* ``grid``: ``GridSearchCV(TripletEmbedder(max_epochs=2), {"margin": 4
  values}, cv=2, n_jobs=N)`` on 640 MNIST digits, with ``N`` from
  ``--n-jobs`` (a setting ``n_jobs=N`` per value).

Settings: ``default`` (nothing set; since issue 30 ``import sktriplet``
sets ``OMP_WAIT_POLICY=PASSIVE`` when torch is not loaded yet, see
:mod:`sktriplet.runtime.wait_policy`); ``OMP_NUM_THREADS=1``;
``OMP_WAIT_POLICY=PASSIVE`` (libgomp threads sleep instead of spinning
while they wait); ``import torch first`` (``import torch`` before
``sktriplet``, so the variable stays unset and libgomp's threads spin for a
while before they sleep: every fit before issue 30); ``PASSIVE after import`` (the variable set with
``os.environ`` after ``import torch``: does it still act?);
``GOMP_SPINCOUNT=0``; ``set_num_threads(1)`` (``torch.set_num_threads(1)``
after import, no variable); ``workers=0`` (``iterator_train__num_workers=0,
iterator_valid__num_workers=0``: decoding in the main process); and
``OMP_NUM_THREADS=1, workers=0``.

Usage::

    python benchmarks/bench_contention.py --workloads image --loads none busy \\
        --settings default OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE --repeats 2
    python benchmarks/bench_contention.py --workloads grid --n-jobs 1 2 --loads none

Prints a Markdown table: median wall and CPU seconds of the fit, the wall
time over that of ``OMP_NUM_THREADS=1`` (or ``n_jobs=1``) in the same
workload and load (``x ref``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")
SETTINGS = (
    "default",
    "OMP_NUM_THREADS=1",
    "OMP_WAIT_POLICY=PASSIVE",
    "import torch first",
    "PASSIVE after import",
    "GOMP_SPINCOUNT=0",
    "set_num_threads(1)",
    "workers=0",
    "OMP_NUM_THREADS=1, workers=0",
)
ENV = {
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=0": {"GOMP_SPINCOUNT": "0"},
    "OMP_NUM_THREADS=1, workers=0": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
PRELUDE = {
    "PASSIVE after import": "import torch, os\nos.environ['OMP_WAIT_POLICY'] = 'PASSIVE'\n",
    "set_num_threads(1)": "import torch\ntorch.set_num_threads(1)\n",
    "import torch first": "import torch\n",
}
NO_WORKERS = {"iterator_train__num_workers": 0, "iterator_valid__num_workers": 0}

WORKLOAD_CODE = {
    "image": """
d = np.load(DATA / "mnist_test" / "mnist_test.npz")
X, y = d["X"][:1280], d["y"][:1280]
est = TripletEmbedder(max_epochs=2, random_state=0, **EXTRA)
run = lambda: est.fit(X, y)
""",
    "backbone": """
from sklearn.datasets import load_files
from sktriplet.networks import BackboneEmbedder
ds = load_files(str(DATA / "faces94_subset18" / "images"), load_content=False, shuffle=False)
est = TripletEmbedder(module=BackboneEmbedder, module__backbone="efficientnet_lite0",
                      image_size=128, max_epochs=10, random_state=0, **EXTRA)
run = lambda: est.fit(ds.filenames, ds.target)
""",
    "grid": """
from sklearn.model_selection import GridSearchCV
d = np.load(DATA / "mnist_test" / "mnist_test.npz")
X, y = d["X"][:640], d["y"][:640]
search = GridSearchCV(TripletEmbedder(max_epochs=2, random_state=0, **EXTRA),
                      {"margin": [0.1, 0.2, 0.3, 0.4]}, cv=2, n_jobs=N_JOBS)
run = lambda: search.fit(X, y)
""",
}


def child_code(workload: str, setting: str, n_jobs: int, data: Path) -> str:
    extra = NO_WORKERS if "workers=0" in setting and workload == "backbone" else {}
    return (
        PRELUDE.get(setting, "")
        + "import json, resource, time\nfrom pathlib import Path\nimport numpy as np\n"
        + "from sktriplet import TripletEmbedder\n"
        + f"DATA = Path({str(data)!r})\nEXTRA = {extra!r}\nN_JOBS = {n_jobs}\n"
        + WORKLOAD_CODE[workload]
        + "def cpu():\n"
        + "    s, c = resource.getrusage(resource.RUSAGE_SELF), "
        + "resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        + "    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime\n"
        + "c0, t0 = cpu(), time.perf_counter()\nrun()\n"
        + "print(json.dumps({'wall': time.perf_counter() - t0, 'cpu': cpu() - c0}))\n"
    )


def run_once(workload: str, setting: str, n_jobs: int, data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(ENV.get(setting, {}))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = child_code(workload, setting, n_jobs, data)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_spinners(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(1.0)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def configs_of(args) -> list[tuple[str, str, str, int]]:
    out = []
    for workload in args.workloads:
        if workload == "grid":
            settings = [(f"n_jobs={n}", n) for n in args.n_jobs]
        else:
            settings = [
                (s, 1) for s in args.settings if workload == "backbone" or "workers" not in s
            ]
        for load in args.loads:
            out += [(workload, load, s, n) for s, n in settings]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["image", "backbone"],
                        choices=list(WORKLOAD_CODE))  # fmt: skip
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--loads", nargs="+", default=["none", "busy"], choices=["none", "busy"])
    parser.add_argument("--busy", type=int, default=2, help="spinning processes for 'busy'")
    parser.add_argument("--n-jobs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    configs = configs_of(args)
    results: dict[tuple, list[dict]] = {c: [] for c in configs}
    loads: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(args.repeats):
        for load in args.loads:
            spinners = start_spinners(args.busy) if load == "busy" else []
            try:
                for config in [c for c in configs if c[1] == load]:
                    loads[config].append(os.getloadavg()[0])
                    results[config].append(run_once(config[0], config[2], config[3], args.data_dir))
                    print(config, results[config][-1], flush=True)
            finally:
                stop(spinners)
    print(f"\n{os.cpu_count()} logical CPUs; median of {args.repeats} run(s)\n")
    print("| workload | extra load | setting | wall (s) | CPU (s) | x ref | load avg |")
    print("|---|---|---|---:|---:|---:|---:|")
    for workload, load, setting, n in configs:
        res = results[(workload, load, setting, n)]
        wall = statistics.median(r["wall"] for r in res)
        cpu = statistics.median(r["cpu"] for r in res)
        ref_setting = "n_jobs=1" if workload == "grid" else "OMP_NUM_THREADS=1"
        ref = [r["wall"] for c, rs in results.items() if c[:3] == (workload, load, ref_setting)
               for r in rs]  # fmt: skip
        ratio = f"{wall / statistics.median(ref):.2f}" if ref else ""
        extra = "none" if load == "none" else f"+{args.busy} busy processes"
        avg = statistics.median(loads[(workload, load, setting, n)])
        cells = [workload, extra, setting, f"{wall:.1f}", f"{cpu:.1f}", ratio, f"{avg:.1f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
