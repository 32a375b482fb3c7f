"""A test-size `nomic-repro run --preset tiny` through the installed console script, shared by
tests/test_pipeline_e2e.py and tests/test_report_browser.py (the session fixture `tiny_run` in conftest.py)."""

import json, os, subprocess, sys, time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "nomic-repro"
MLM_STEPS, STAGE2_STEPS, STAGE3_STEPS = 12, 24, 12
# The tiny preset cut to test size (~25 s on 2 cores, most of it MiniLM filtering/mining and the imports): few steps,
# small batches and data slices, checkpoints every 4 steps (so a kill mid-stage has one to resume from), the
# consistency filter kept (on a 200-pair sample per source: resuming re-runs it, so its determinism is tested),
# evaluation on STS-B only with no baselines (full SciFact costs ~20 s per stage, BM25 scores retrieval tasks only), and the
# long-context curve at one length (QMSum at 256 tokens, NTK and plain RoPE), so the report has every kind of plot.
OVERRIDES = (
    f"mlm.train.max_steps={MLM_STEPS}",
    "mlm.train.batch_size=8",
    "mlm.data.limit_docs=200",
    "mlm.train.save_every=4",
    f"contrastive.train.max_steps={STAGE2_STEPS}",
    "contrastive.train.batch_size=16",
    "contrastive.train.warmup_steps=2",
    "contrastive.train.save_every=4",
    "contrastive.data.limit_per_source=200",
    "contrastive.data.filter_sample_size=200",
    "contrastive.data.filter_max_length=64",
    f"finetune.train.max_steps={STAGE3_STEPS}",
    "finetune.train.batch_size=8",
    "finetune.train.warmup_steps=2",
    "finetune.train.save_every=4",
    "finetune.data.limit=64",
    'eval_tasks=["stsb"]',
    "baselines=[]",
    "long_context=[256]",
)
STEPS = {"stage1": MLM_STEPS, "stage2": STAGE2_STEPS, "stage3": STAGE3_STEPS}


def command(out: Path) -> list[str]:
    return [
        str(SCRIPT),
        "run",
        "--preset",
        "tiny",
        "--output-dir",
        str(out),
        *(a for o in OVERRIDES for a in ("--set", o)),
    ]


def env() -> dict:
    "Same environment for every run of a comparison: fixed hash seed, one thread per op unless the caller set more."
    return {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }


def start(out: Path, log: Path) -> subprocess.Popen:
    "Start the run in its own process group (so a kill reaches all of it); stdout+stderr go to `log`."
    with open(log, "ab") as f:
        return subprocess.Popen(
            command(out), stdout=f, stderr=subprocess.STDOUT, env=env(), start_new_session=True
        )


@dataclass
class Run:
    out: Path
    seconds: float
    stdout: str
    report: dict  # report.json as this run wrote it


def run(out: Path, log: Path, timeout: float = 600) -> Run:
    "Run to completion; raise with the log's tail if it fails."
    t0, p = time.time(), start(out, log)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"nomic-repro run timed out after {timeout} s; log: {log}")
    text = log.read_text(errors="replace")
    if rc != 0:
        raise AssertionError(f"nomic-repro run exited {rc}; log {log}:\n{text[-4000:]}")
    return Run(out, time.time() - t0, text, json.loads((out / "report.json").read_text()))


def metrics(out: Path, stage: str) -> list[dict]:
    f = out / stage / "metrics.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f.exists() else []
