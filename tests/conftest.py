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


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    "Headless Debian Chromium through playwright, shared by the browser tests; skips, saying why, without either."
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"{CHROMIUM} missing (as root: apt-get install -y chromium, or `make browser`): no browser checks"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "playwright missing (pip install playwright, part of the dev extras): no browser checks"
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def pytest_terminal_summary(terminalreporter):
    "#27: how many faults tests/test_fault_injection.py injected and how many runs recovered from them."
    mod = sys.modules.get("test_fault_injection")
    if mod is not None and mod.TALLY["injected"]:
        t = mod.TALLY
        terminalreporter.write_line(
            f"fault injection: {t['injected']} injected, {t['survived']} survived"
        )
