"""``import sktriplet`` makes torch's OpenMP threads sleep while they wait (issue 30)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sktriplet.runtime.wait_policy import prefer_passive_wait

ROOT = Path(__file__).resolve().parents[1]

# The value libgomp reads is the C library's environment, not os.environ.
CHILD = """
import ctypes, os, sys
{before}
import sktriplet
value = ctypes.CDLL(None).getenv
value.restype = ctypes.c_char_p
print(value(b"OMP_WAIT_POLICY"))
"""


def run_child(before: str = "") -> str:
    child_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    child_env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(before=before)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("environ", "modules", "changed", "after"),
    [
        ({}, {}, True, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, {}, False, {"OMP_WAIT_POLICY": "ACTIVE"}),
        ({"OMP_WAIT_POLICY": "passive"}, {}, False, {"OMP_WAIT_POLICY": "passive"}),
        ({}, {"torch": object()}, False, {}),
    ],
)
def test_prefer_passive_wait_sets_the_variable_only_when_it_can_still_act(
    environ, modules, changed, after
):
    assert prefer_passive_wait(environ, modules) is changed
    assert environ == after


def test_import_sets_passive_in_the_c_environment_of_a_fresh_process():
    assert run_child() == "b'PASSIVE'"


def test_import_after_torch_leaves_the_variable_unset():
    assert run_child(before="import torch") == "None"
