"""Run the course as a student does: each notebook top to bottom in a real Jupyter kernel, at the default size.

    python tools/course.py [NOTEBOOK ...] [--workers N] [--timeout S] [--save-dir DIR]

No notebook given: every notebook in nbs/ (and nbs/solutions/, if any) except those whose metadata says
`skip_exec` (the instructor's GPU notebook). Each kernel starts in nbs/ (as JupyterLab does) with a clean
environment: the variables that shrink lessons to test size or switch tests on (`IN_TEST`, `PYTEST_*`, `CI`,
`TRITON_INTERPRET`, `NOMIC_REPRO_SLOW`, `NOMIC_REPRO_FULL`) are removed, so `#| gpu`, `#| slow` and `#| full`
cells must guard themselves. Prints a table of wall and kernel-CPU seconds per notebook and fails on any error.
With several workers each kernel gets OMP_NUM_THREADS=cores/workers, so a notebook's CPU seconds are about
its wall time on one idle core. `--save-dir` keeps the executed notebooks (outputs included), each with
`metadata.course` = {ok, package, seconds}: whether it ran without error, and the hash of the package it ran
against, so `tools/docs.py` renders the site from them when they are still fresh instead of running them again.
"""

import argparse, hashlib, json, os, re, sys, time, traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
DROP = ("IN_TEST", "CI", "TRITON_INTERPRET", "NOMIC_REPRO_SLOW", "NOMIC_REPRO_FULL")
BUDGET_NB, BUDGET_ALL = 180, 25 * 60  # seconds: a notebook, the whole course


def student_env(threads: int | None) -> dict:
    "os.environ without the test switches (and with `threads` BLAS/OpenMP threads when given)."
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in DROP and not k.startswith(("PYTEST_", "NBDEV_"))
    }
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def package_hash() -> str:
    "sha256 of the package's Python sources (nomic_repro/**/*.py): executed outputs are only as fresh as it is."
    h = hashlib.sha256()
    for f in sorted((ROOT / "nomic_repro").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def save_executed(nb, save_dir: Path, name: str, ok: bool, seconds: float) -> Path:
    "Write executed `nb` as save_dir/name (atomically), marked with whether it ran clean and the package hash."
    import nbformat

    nb.metadata["course"] = dict(ok=ok, package=package_hash(), seconds=round(seconds, 1))
    save_dir.mkdir(parents=True, exist_ok=True)
    tmp = save_dir / f".{name}.{os.getpid()}.tmp"
    nbformat.write(nb, tmp)
    os.replace(tmp, save_dir / name)
    return save_dir / name


def skip_exec(path: Path) -> bool:
    "Does the notebook's front matter (a raw cell, as nbdev reads it) say `skip_exec: true`?"
    cells = json.loads(path.read_text())["cells"]
    raw = "".join(cells[0]["source"]) if cells and cells[0]["cell_type"] == "raw" else ""
    return re.search(r"^skip_exec:\s*true\s*$", raw, re.M) is not None


def notebooks(args: list[str]) -> list[Path]:
    if args:
        return [Path(a).resolve() for a in args]
    found = sorted(NBS.glob("*.ipynb")) + sorted((NBS / "solutions").glob("*.ipynb"))
    return [p for p in found if not skip_exec(p)]


def _cpu_seconds(pid: int) -> float:
    "utime + stime of process `pid` from /proc (Linux); 0 when unavailable."
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(path: Path, env: dict, timeout: int, save_dir: Path | None) -> dict:
    "Execute one notebook; return its name, wall and CPU seconds and the first error (or None)."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0, cpu, error = time.time(), 0.0, None
    try:
        with client.setup_kernel(env=env, cwd=str(path.parent)):
            pid = client.km.provisioner.process.pid
            try:
                for i, cell in enumerate(nb.cells):
                    client.execute_cell(cell, i)
            finally:
                cpu = _cpu_seconds(pid)
    except CellExecutionError as e:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[-1][:300]
    except Exception as e:
        error = f"{type(e).__name__}: {e}"[:300]
        traceback.print_exc()
    if error:  # the failing cell's source, for the log
        bad = next(
            (
                c
                for c in nb.cells
                if any(o.get("output_type") == "error" for o in c.get("outputs", []))
            ),
            None,
        )
        if bad is not None:
            error += "\n    in cell:\n      " + "\n      ".join(bad.source.splitlines()[:12])
    if save_dir is not None:
        save_executed(nb, save_dir, path.name, error is None, time.time() - t0)
    return dict(
        name=path.relative_to(NBS).as_posix() if path.is_relative_to(NBS) else path.name,
        wall=time.time() - t0,
        cpu=cpu,
        error=error,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    p.add_argument("--save-dir", type=Path)
    a = p.parse_args(argv)
    paths = notebooks(a.notebooks)
    cores = os.cpu_count() or 1
    env = student_env(max(1, cores // a.workers) if a.workers > 1 else None)
    print(
        f"course: {len(paths)} notebooks, {a.workers} worker(s), student size, clean environment",
        flush=True,
    )
    t0, results = time.time(), []
    with ThreadPoolExecutor(a.workers) as pool:
        for r in pool.map(lambda q: run_one(q, env, a.timeout, a.save_dir), paths):
            flag = "FAILED" if r["error"] else ("over 3 min" if r["wall"] > BUDGET_NB else "ok")
            print(
                f"  {r['name']:34} {r['wall']:7.1f} s wall {r['cpu']:7.1f} s cpu  {flag}",
                flush=True,
            )
            if r["error"]:
                print(f"    {r['error']}", flush=True)
            results.append(r)
    wall, cpu = sum(r["wall"] for r in results), sum(r["cpu"] for r in results)
    failed = [r["name"] for r in results if r["error"]]
    print(
        f"course: {len(results) - len(failed)} passed, {len(failed)} failed; notebooks' wall time summed "
        f"{wall / 60:.1f} min (budget 25), kernel CPU {cpu / 60:.1f} min, elapsed {(time.time() - t0) / 60:.1f} min",
        flush=True,
    )
    if failed:
        print("course: failed: " + ", ".join(failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
