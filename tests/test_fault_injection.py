"""#27's fault-injection suite: SIGKILL at every completed write of a run (each `os.replace`: checkpoints, the
model folder, preset and data records, mined negatives, eval JSON, embeddings, report.html), just before the rename
(and for stage 1, embed, eval and the report just after it too, which stages 2 and 3 would repeat); then the
same command again, which must finish with exactly the uninterrupted run's result (the same loss at every step,
the same weights, the same scores) and leave no temporary behind. The counts are printed at the end of the
pytest run ("fault injection: N injected, N survived")."""

import hashlib, json, os, signal, subprocess, sys
from pathlib import Path
import pytest

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
TALLY = {"injected": 0, "survived": 0}  # read by conftest's terminal summary
SMALL = ["--set", "train.batch_size=4", "--set", "train.max_steps=4", "--set", "train.save_every=2"]
MLM = [
    "mlm",
    "--preset",
    "tiny",
    *SMALL,
    "--set",
    "data.limit_docs=64",
    "--set",
    "model.num_layers=1",
]
PAIRS = [*SMALL, "--set", "data.filter_model=null", "--set", "data.limit_per_source=48",
         "--set", "eval_tasks=[]"]  # fmt: skip


def cli(tmp, mode, n, args):
    "The command with a SIGKILL at the n-th rename (n = 0: none); returns (exit code, renames made)."
    count = tmp / "renames.txt"
    cmd = [
        sys.executable,
        str(HERE / "_faulty.py"),
        mode,
        str(n),
        str(count),
        "--",
        *map(str, args),
    ]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    if n == 0:
        assert r.returncode == 0, r.stderr[-3000:]
        return r.returncode, int(count.read_text())
    return r.returncode, None


def state(out: Path) -> dict:
    "What a finished stage is: the loss at every step and a hash of every file of its model."
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    files = sorted(p for p in (out / "model").rglob("*") if p.is_file())
    return {
        "losses": [(s["step"], s["loss"]) for s in steps],
        "model": {
            str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
        },
    }


def temporaries(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name]


def kill_everywhere(tmp: Path, args_for, result, modes=("before", "after"), prepare=None):
    "For every rename of the run, kill before and after it, rerun, and compare with the uninterrupted result."
    ref_dir = tmp / "ref"
    prepare and prepare(ref_dir)
    _, renames = cli(tmp, "before", 0, args_for(ref_dir))
    expected = result(ref_dir)
    assert renames >= 1, renames
    for mode in modes:
        for n in range(1, renames + 1):
            out = tmp / f"{mode}-{n}"
            prepare and prepare(out)
            rc, _ = cli(tmp, mode, n, args_for(out))
            assert rc == -signal.SIGKILL, (mode, n, rc)
            TALLY["injected"] += 1
            cli(tmp, mode, 0, args_for(out))  # the same command again: resumes, heals
            assert result(out) == expected, (mode, n)
            assert not temporaries(out), (mode, n, temporaries(out))
            TALLY["survived"] += 1
    return renames


def test_stage_1_survives_a_kill_at_every_write(tmp_path):
    kill_everywhere(tmp_path, lambda d: [*MLM, "--output-dir", d], state)


def test_stage_1_survives_a_full_disk_at_every_write(tmp_path):
    "A write that fails as a full disk does: one line, exit code 1 (the environment), and a rerun completes."
    args = lambda d: [*MLM, "--output-dir", d]
    _, renames = cli(tmp_path, "full", 0, args(tmp_path / "ref"))
    expected = state(tmp_path / "ref")
    for n in range(1, renames + 1):
        out, count = tmp_path / f"full-{n}", tmp_path / "renames.txt"
        cmd = [
            sys.executable,
            str(HERE / "_faulty.py"),
            "full",
            str(n),
            str(count),
            "--",
            *map(str, args(out)),
        ]
        r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
        TALLY["injected"] += 1
        assert r.returncode == 1 and "Traceback" not in r.stderr, (n, r.stderr[-2000:])
        (line,) = [l for l in r.stderr.splitlines() if "error:" in l]
        assert line.startswith("nomic-repro mlm: error:") and "No space left on device" in line, (
            line
        )
        cli(tmp_path, "full", 0, args(out))
        assert state(out) == expected and not temporaries(out), n
        TALLY["survived"] += 1


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    d = tmp_path_factory.mktemp("s1")
    cli(d, "before", 0, [*MLM, "--output-dir", d / "run"])
    return d / "run" / "model"


def test_stage_2_survives_a_kill_before_every_write(tmp_path, stage1):
    args = lambda d: [
        "contrastive",
        "--preset",
        "tiny",
        "--init",
        stage1,
        *PAIRS,
        "--output-dir",
        d,
    ]
    kill_everywhere(tmp_path, args, state, modes=("before",))  # stage 1 tests after-kills too


def test_eval_and_embed_outputs_survive_a_kill_at_every_write(tmp_path, stage1):
    texts = ["rotary position embeddings", "mixture of experts"]
    embed = lambda d: ["embed", "--model", stage1, "--text", *texts, "--output", d / "e.jsonl"]
    read = lambda d: (d / "e.jsonl").read_text()
    kill_everywhere(tmp_path, embed, read)
    ev = lambda d: ["eval", "--model", "bm25", "--task", "scifact", "--limit-docs", "100",
                    "--output", d / "r.json"]  # fmt: skip
    scores = lambda d: [r["metrics"] for r in json.loads((d / "r.json").read_text())]
    kill_everywhere(tmp_path / "eval", ev, scores)


def test_stage_3_survives_a_kill_before_every_write(tmp_path, stage1):
    "Mined negatives, checkpoints and the model folder (each kill before its rename: ~4 minutes on 2 cores)."
    s2 = tmp_path / "s2"
    cli(
        tmp_path,
        "before",
        0,
        ["contrastive", "--preset", "tiny", "--init", stage1, *PAIRS, "--output-dir", s2],
    )
    args = lambda d: ["finetune", "--preset", "tiny", "--init", s2 / "model", *SMALL,
                      "--set", "data.limit=32", "--set", "eval_tasks=[]", "--output-dir", d]  # fmt: skip
    kill_everywhere(tmp_path / "s3", args, state, modes=("before",))


def test_report_survives_a_kill_at_every_write(tmp_path, tiny_run):
    "`nomic-repro report` rewrites report.html of a finished run (plotly's random element ids aside)."
    import re, shutil

    copy = lambda d: (
        d.exists() or shutil.copytree(tiny_run.out, d, ignore=shutil.ignore_patterns("checkpoints"))
    )
    ids = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    page = lambda d: ids.sub("ID", (d / "report.html").read_text())
    kill_everywhere(tmp_path, lambda d: ["report", "--output-dir", d], page, prepare=copy)
