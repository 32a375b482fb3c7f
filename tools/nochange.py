"""Run a command and fail if it changed any file under the given paths.

    python tools/nochange.py "why it matters" PATH [PATH ...] -- CMD [ARG ...]

Used by `make test` for the nbdev gates: `nbdev-clean` must leave the notebooks as committed (outputs stripped),
and `nbdev-export` must leave `nomic_repro/` as committed (the package is generated from the notebooks, never
edited by hand). Works on uncommitted trees too, because it compares file hashes before and after.
"""

import hashlib, subprocess, sys
from pathlib import Path


def snapshot(paths):
    out = {}
    for p in map(Path, paths):
        files = (
            [p]
            if p.is_file()
            else sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        )
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def main(argv):
    if "--" not in argv or len(argv) < 4:
        sys.exit(__doc__)
    i = argv.index("--")
    why, paths, cmd = argv[0], argv[1:i], argv[i + 1 :]
    before = snapshot(paths)
    r = subprocess.run(cmd)
    if r.returncode:
        sys.exit(f"FAILED: {' '.join(cmd)} exited {r.returncode}")
    after = snapshot(paths)
    changed = sorted(f for f in before.keys() | after.keys() if before.get(f) != after.get(f))
    if changed:
        print(f"FAILED: `{' '.join(cmd)}` changed {len(changed)} file(s): {why}", file=sys.stderr)
        for f in changed:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: `{' '.join(cmd)}` left {', '.join(paths)} unchanged")


if __name__ == "__main__":
    main(sys.argv[1:])
