"""Readability and self-containment gates, run by `make gates` (and so by `make test`).

    python tools/gates.py

Fails (exit 1, one line per offence) when:
- a code line in a notebook (nbs/, nbs/solutions/) or in kernels/*.py is longer than 100 characters;
- an exported notebook cell (`#| export`, `#| exporti`) is longer than 50 lines, unless it holds one `@triton.jit`
  kernel (a kernel is one function: its launch parameters and tiles read best together);
- `ruff format --check` would reformat a notebook, test, tool or kernels/ script (run `ruff format` to fix);
- a notebook is committed with outputs or execution counts (the course is committed clean);
- a notebook, the package, a test, a tool, kernels/ or README.md cites a document the repository does not ship
  (the team's design notes) or says "the issue" / "UNVERIFIED": cite the papers, public code or our notebooks;
- the package's imports break the house plan (`check_imports`): a cycle between package modules, an import (at
  the top or inside a function) of a module exported from a later notebook than the importer's (the course is
  read in notebook order, so a lower module that needs a higher one takes it as an argument or a registry
  entry), or a `_private` name imported from another package module (make it public or move the code);
- `ruff check --select F401` finds an unused import in the package (fix it in the notebook).
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


HEADER = re.compile(r"File to edit: (?:\.\./)+nbs/(\S+?\.ipynb)")


def package_modules() -> dict:
    "Dotted module name -> (path, the notebook it is exported from or None), for nomic_repro/**/*.py."
    mods = {}
    for p in sorted((ROOT / "nomic_repro").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        m = HEADER.search(p.read_text()[:1000])
        mods[name] = (p, m.group(1) if m else None)
    return mods


def module_imports(name: str, path: Path, mods: dict):
    "(line, imported package module, imported name or None) for every import anywhere in the file."
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods:
                    yield node.lineno, a.name, None
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
            src = ".".join(base + [node.module]) if node.module else ".".join(base)
            for a in node.names if src in mods else ():
                sub = f"{src}.{a.name}"
                yield (node.lineno, sub, None) if sub in mods else (node.lineno, src, a.name)


def check_imports():
    "Cycles, imports of later notebooks' modules, and private names across package modules."
    mods = package_modules()
    graph = {n: set() for n in mods}
    for name, (path, nb) in mods.items():
        rel = path.relative_to(ROOT)
        for line, target, imported in module_imports(name, path, mods):
            tnb = mods[target][1]
            if target == name or tnb is None or nb is None:
                continue  # the package's __init__ is not a notebook's module
            graph[name].add(target)
            if tnb > nb:
                yield f"{rel}:{line}: imports {target} ({tnb}), a later notebook than {nb}"
            if imported and imported.startswith("_") and not imported.startswith("__"):
                yield f"{rel}:{line}: imports the private name {imported} from {target}"
    yield from find_cycles(graph)


def find_cycles(graph: dict):
    "One line per import cycle found by a depth-first search."
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                yield "import cycle: " + " -> ".join(stack[stack.index(m) :] + [m])
            elif m not in state:
                yield from visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            yield from visit(n)


def check_unused_imports():
    "ruff's F401 over the package (pyproject excludes nomic_repro/ from ruff; this asks for it)."
    ruff = shutil.which("ruff")
    if ruff is None:
        return  # check_format already says how to install it
    cmd = [ruff, "check", "--select", "F401", "--no-force-exclude", "--output-format", "concise"]
    out = subprocess.run(cmd + ["nomic_repro"], cwd=ROOT, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if ": F401" in line:
            yield f"{line}: remove the import in the notebook (or mark a side-effect import noqa)"


def problems():
    yield from check_format()
    yield from check_imports()
    yield from check_unused_imports()
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
        "ruff-formatted, no committed outputs, no citations of absent documents, imports in notebook order, "
        "no unused imports)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
