"""Adding a paradigm is adding files and a registry line (issue 21): a toy third paradigm,
defined only in tests/toy_paradigm.py and plugged in through PSYCHINTERP_PARADIGMS, validates
its section, generates, builds trials, is served with its type and graded, with no other code
knowing its name.

The run (tests/toy_paradigm_flow.py) happens in a fresh pytest process whose environment names
the plug-in: setting the variable in this process would leak it into every server and worker
process that later tests start from other directories, where `tests` is not importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server import paradigms

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_paradigms_are_not_registered_here():
    assert "toy" not in paradigms.names()  # the plug-in is only ever on in its own process


def test_toy_paradigm_plugs_in_through_the_environment():
    env = {**os.environ, "PSYCHINTERP_PARADIGMS": "tests.toy_paradigm:ToyParadigm"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "tests/toy_paradigm_flow.py"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "2 passed" in run.stdout, run.stdout[-3000:]


def test_a_plug_in_that_cannot_be_imported_is_named_in_the_error():
    env = {**os.environ, "PSYCHINTERP_PARADIGMS": "no_such_package.mod:Thing"}
    run = subprocess.run(
        [sys.executable, "-c", "import server.paradigms"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "PSYCHINTERP_PARADIGMS" in run.stderr and "no_such_package.mod:Thing" in run.stderr
