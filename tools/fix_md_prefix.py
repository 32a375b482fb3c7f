"""Strip the '# ' comment prefix that a percent-format authoring script left on every line of markdown cells.

    python tools/fix_md_prefix.py nbs/*.ipynb

Only cells in which *every* line starts with '# ' (or is a bare '#') are changed, so hand-written markdown is
left alone. Idempotent: a fixed cell no longer matches (its prose lines do not start with '# ').
"""

import sys
import nbformat


def fix(path):
    nb, n = nbformat.read(path, 4), 0
    for c in nb.cells:
        lines = c.source.split("\n")
        if (
            c.cell_type == "markdown"
            and len(lines) > 1
            and all(l.startswith("# ") or l == "#" for l in lines)
        ):
            c.source = "\n".join(l[2:] if l.startswith("# ") else "" for l in lines)
            n += 1
    if n:
        nbformat.write(nb, path)
    return n


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, fix(p))
