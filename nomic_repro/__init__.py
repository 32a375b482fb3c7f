__version__ = "0.0.1"

# Importing any part of the package first runs `core`, which (on a machine without CUDA) sets TRITON_INTERPRET=1
# before triton is imported, so Triton kernels run in the interpreter. See nbs/00_core.ipynb.
from . import core as _core  # noqa: E402,F401
