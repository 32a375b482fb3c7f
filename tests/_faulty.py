"""`python tests/_faulty.py MODE N COUNT_FILE -- <nomic-repro arguments>`: the real command line with one SIGKILL
injected at a write. Every file and folder the project writes whole goes through `os.replace` (temporary first,
then the rename: `core.atomic_write`, `core.atomic_folder`, the trainer's checkpoints), so the N-th `os.replace`
is the N-th completed write. MODE `before` kills just before that rename (the temporary is complete, the target
is the old one), `after` just after it (the target is new, nothing later is written), `full` makes that rename
fail as a full disk does (OSError ENOSPC); N = 0 injects nothing and writes the number of renames this run made
to COUNT_FILE, so a test knows how many kill points a run has."""

import errno, os, signal, sys

mode, n, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
assert sys.argv[4] == "--" and mode in ("before", "after", "full"), sys.argv
_real, calls = os.replace, [0]


def _replace(src, dst, *args, **kwargs):
    calls[0] += 1
    if calls[0] == n and mode == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    if calls[0] == n and mode == "full":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    out = _real(src, dst, *args, **kwargs)
    if calls[0] == n and mode == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return out


os.replace = _replace
from nomic_repro.cli import main  # noqa: E402  (after the patch: every module sees it)

rc = main(sys.argv[5:])
if n == 0:
    with open(count_file, "w") as f:
        f.write(str(calls[0]))
sys.exit(rc)
