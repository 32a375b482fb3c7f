import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tests run on CPU machines: Triton kernels need the interpreter, set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("PLOTLY_RENDERER", "notebook_connected")
import nomic_repro  # noqa: E402,F401  (runs nomic_repro.core's interpreter switch first)
