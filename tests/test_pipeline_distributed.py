"""`torchrun --nproc_per_node 2 -m nomic_repro.cli run --preset tiny` on CPU (2 gloo processes): the whole pipeline
trains under DDP, rank 0 alone evaluates and writes the report, and the stages agree with a one-process run of the
same global batches (same data, same losses to float tolerance; stages 2 and 3 of that run with InfoNCE × 2, the factor
contrastors' `clip_loss` gives two processes: `infonce_scale`, notebook 15)."""

import json, subprocess, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _launch import launch_env, launcher  # noqa: E402

MINI = [
    "mlm.train.max_steps=3",
    "mlm.data.limit_docs=64",
    "mlm.model.num_layers=1",
    "mlm.train.batch_size=8",
    "contrastive.train.max_steps=3",
    "contrastive.train.batch_size=8",
    "contrastive.data.limit_per_source=48",
    "contrastive.data.filter_sample_size=48",
    "contrastive.data.filter_max_length=64",
    "finetune.train.max_steps=3",
    "finetune.train.batch_size=8",
    "finetune.data.limit=32",
    'eval_tasks=["stsb"]',
    "baselines=[]",
    "long_context=[]",
]


def run(out: Path, nproc: int):
    # one process takes the two-process steps when its InfoNCE carries their factor W = 2
    same_as_two = ["contrastive.infonce_scale=2", "finetune.infonce_scale=2"] if nproc == 1 else []
    env = launch_env(PYTHONHASHSEED="0")
    cmd = [
        *launcher(nproc),
        "-m",
        "nomic_repro.cli",
        "run",
        "--preset",
        "tiny",
        "--output-dir",
        str(out),
        *[a for s in MINI + same_as_two for a in ("--set", s)],
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


def losses(out: Path, stage: str):
    return [json.loads(l)["loss"] for l in (out / stage / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_two_gloo_processes_run_the_tiny_pipeline(tmp_path):
    r2 = run(tmp_path / "two", 2)
    rep = json.loads((tmp_path / "two" / "report.json").read_text())
    assert rep["world_size"] == 2 and rep["stages_run"] == ["stage1", "stage2", "stage3"]
    assert (
        set(rep["evaluation"]) >= {"stage 1", "stage 2", "stage 3"}
        and (tmp_path / "two" / "report.html").exists()
    )
    assert r2.stdout.count("report:") == 1  # rank 0 alone prints the table and the report path
    run(tmp_path / "one", 1)
    for stage in ("stage1", "stage2", "stage3"):
        a, b = losses(tmp_path / "two", stage), losses(tmp_path / "one", stage)
        assert len(a) == len(b) == 3 and all(
            abs(x - y) <= 1e-4 * max(1.0, abs(y)) for x, y in zip(a, b)
        ), (stage, a, b)
    mined = [p.name for p in (tmp_path / "two" / "stage3").glob("mined-*.jsonl.gz")]
    assert mined and not list((tmp_path / "two" / "stage3").glob("*.tmp"))


def test_resume_on_a_different_number_of_processes(tmp_path):
    "Pre-empted on 2 processes, resumed on 1 (a smaller machine): the same losses as one uninterrupted process."
    sets = [
        a
        for s in [
            "train.max_steps=6",
            "train.save_every=3",
            "train.batch_size=8",
            "model.num_layers=1",
            "model.hidden_size=64",
            "model.intermediate_size=96",
            "data.seq_len=32",
            "data.limit_docs=64",
        ]
        for a in ("--set", s)
    ]
    env = launch_env(PYTHONHASHSEED="0")

    def mlm(out, nproc, *extra):
        r = subprocess.run(
            [
                *launcher(nproc),
                "-m",
                "nomic_repro.cli",
                "mlm",
                "--preset",
                "tiny",
                "--output-dir",
                str(out),
                *sets,
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    mlm(tmp_path / "moved", 2, "--max-steps", "3")  # 2 processes, stopped at the step-3 checkpoint
    mlm(tmp_path / "moved", 1)  # resumed by 1 process
    mlm(tmp_path / "one", 1)
    a, b = losses(tmp_path, "moved"), losses(tmp_path, "one")
    assert len(a) == len(b) == 6 and all(
        abs(x - y) <= 1e-5 * max(1.0, abs(y)) for x, y in zip(a, b)
    ), (a, b)
