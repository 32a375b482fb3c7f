"""Readability and self-containment gates, run by `make gates` (and so by `make test`).

    python tools/gates.py

Fails (exit 1, one line per offence) when:
- a code line in a notebook (nbs/, nbs/solutions/) or in kernels/*.py is longer than 100 characters;
- an exported notebook cell (`#| export`, `#| exporti`) is longer than 50 lines, unless it holds one `@triton.jit`
  kernel (a kernel is one function: its launch parameters and tiles read best together);
- `ruff format --check` would reformat a notebook, test, tool or kernels/ script (run `ruff format` to fix);
- a notebook is committed with outputs or execution counts (the course is committed clean);
- a notebook, the package, a test, a tool, kernels/ or README.md cites a document the repository does not ship
  (the team's design notes) or says "the issue" / "UNVERIFIED": cite the papers, public code or our notebooks.
"""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE, MAX_EXPORT = 100, 50
ABSENT = re.compile(
    r"\bFACTS\b|\bKERNELS(\.md| §)|\bDESIGN(\.md| §)|\bNBDEV\.md|\bEVAL\.md|\bthe issue\b|UNVERIFIED"
)
SELF = Path(__file__).resolve()


def notebook_paths():
    return sorted((ROOT / "nbs").glob("*.ipynb")) + sorted(
        (ROOT / "nbs" / "solutions").glob("*.ipynb")
    )


def check_notebook(path: Path):
    nb = json.loads(path.read_text())
    rel = path.relative_to(ROOT)
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"])
        for m in ABSENT.finditer(src):
            yield f"{rel} cell {i}: cites an absent document or says {m.group(0)!r}"
        if cell["cell_type"] != "code":
            continue
        lines = src.split("\n")
        for j, line in enumerate(lines):
            if len(line) > MAX_LINE:
                yield f"{rel} cell {i} line {j + 1}: {len(line)} characters (max {MAX_LINE})"
        too_long = len(lines) > MAX_EXPORT and not one_triton_kernel(src)
        if re.match(r"#\|\s*export", src) and too_long:
            yield f"{rel} cell {i}: exported cell of {len(lines)} lines (max {MAX_EXPORT}): split it"
        if cell.get("outputs") or cell.get("execution_count") is not None:
            yield f"{rel} cell {i}: committed with outputs: run nbdev-clean after clearing outputs"


def one_triton_kernel(src: str) -> bool:
    "True when a cell's code is a single function decorated with `triton.jit`."
    try:
        body = ast.parse(src).body
    except SyntaxError:
        return False
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef):
        return False
    return any(ast.unparse(d) == "triton.jit" for d in body[0].decorator_list)


def check_format():
    "One line per file `ruff format` would change (the formatter is pinned in the dev extras)."
    ruff = shutil.which("ruff")
    if ruff is None:
        yield "ruff is not installed: `make install` installs the pinned formatter"
        return
    out = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("Would reformat"):
            yield f"{line}: run `ruff format` on it"
    if out.returncode not in (0, 1) or (out.returncode == 1 and "Would reformat" not in out.stdout):
        yield f"ruff format --check failed: {(out.stderr or out.stdout).strip()[:200]}"


def check_text(path: Path, long_lines: bool):
    rel = path.relative_to(ROOT)
    for j, line in enumerate(path.read_text().splitlines()):
        if long_lines and len(line) > MAX_LINE:
            yield f"{rel}:{j + 1}: {len(line)} characters (max {MAX_LINE})"
        for m in ABSENT.finditer(line):
            yield f"{rel}:{j + 1}: cites an absent document or says {m.group(0)!r}"


def problems():
    yield from check_format()
    for p in notebook_paths():
        yield from check_notebook(p)
    for p in sorted((ROOT / "kernels").glob("*.py")):
        yield from check_text(p, long_lines=True)
    texts = [
        ROOT / "README.md",
        *sorted((ROOT / "nomic_repro").rglob("*.py")),
        *sorted((ROOT / "tests").glob("*.py")),
        *sorted((ROOT / "tools").glob("*.py")),
    ]
    for p in texts:
        if p.resolve() != SELF:
            yield from check_text(p, long_lines=False)


def main() -> int:
    found = list(problems())
    for f in found:
        print(f)
    print(
        f"gates: {len(found)} problem(s) (code lines <= {MAX_LINE}, exported cells <= {MAX_EXPORT} lines, "
        "ruff-formatted, no committed outputs, no citations of absent documents)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
