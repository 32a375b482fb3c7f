import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tests run on CPU machines: Triton kernels need the interpreter, set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("PLOTLY_RENDERER", "notebook_connected")
import nomic_repro  # noqa: E402,F401  (runs nomic_repro.core's interpreter switch first)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "One test-size `nomic-repro run --preset tiny` (three stages, evaluation, report), run once per session."
    from _pipeline_run import run
    base = tmp_path_factory.mktemp("tiny_run")
    r = run(base / "run", base / "run.log")
    print(f"\ntiny run: {r.seconds:.1f} s in {r.out}")
    return r
