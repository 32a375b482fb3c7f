"""`nomic-repro run --preset tiny` end to end, as a user runs it: the installed console script in a subprocess, three
stages, evaluation and the report; a run killed with SIGKILL in the middle of stage 2 and started again ends with the
same evaluation and the same losses, step by step, as the uninterrupted run; a finished folder reruns nothing."""

import os, re, signal, time
import pytest
from _pipeline_run import SCRIPT, STEPS, metrics, run, start

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason=f"the nomic-repro console script is not installed at {SCRIPT}"
)


def losses(out, stage):
    return [(r["step"], r["loss"]) for r in metrics(out, stage)]


def test_run_three_stages_evaluation_report(tiny_run):
    out, rep = tiny_run.out, tiny_run.report
    assert rep["stages_run"] == ["stage1", "stage2", "stage3"]
    for stage, n in STEPS.items():
        assert [s for s, _ in losses(out, stage)] == list(range(1, n + 1)), stage
        assert (out / stage / "model" / "model.safetensors").exists(), stage
    ev = rep["evaluation"]
    assert list(ev) == ["stage 1", "stage 2", "stage 3", "nomic-embed-text-v1 (published)"]
    for name in ("stage 1", "stage 2", "stage 3"):
        assert set(ev[name]) == {"stsb"} and -1 <= ev[name]["stsb"] <= 1
    assert rep["preset"]["mlm"]["train"]["max_steps"] == STEPS["stage1"] and rep["preset"][
        "eval_tasks"
    ] == ["stsb"]
    html = (out / "report.html").read_text()
    assert (
        "plotly" in html and "<table" in html and not re.search(r"<script[^>]*\bsrc=", html)
    )  # plotly.js embedded
    assert "| stage 3 |" in tiny_run.stdout and "report:" in tiny_run.stdout
    print(f"\nuninterrupted run: {tiny_run.seconds:.1f} s; evaluation: {ev}")


def test_kill_mid_stage2_then_rerun_gives_the_same_result(tiny_run, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    p, t0 = start(out, log), time.time()
    ckpt = out / "stage2" / "checkpoints"
    try:  # kill as soon as stage 2 has a complete checkpoint (renamed into place, trainer.json inside)
        while not any((c / "trainer.json").exists() for c in ckpt.glob("step-*")):
            assert p.poll() is None, (
                f"the run ended (rc {p.returncode}) before stage 2 wrote a checkpoint:\n{log.read_text()[-3000:]}"
            )
            assert time.time() - t0 < 300, "no stage-2 checkpoint after 300 s"
            time.sleep(0.01)
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    done = [s for s, _ in losses(out, "stage2")]
    assert not (out / "stage2" / "model").exists() and done and done[-1] < STEPS["stage2"], (
        f"the kill came too late (stage 2 logged {done[-1:]} of {STEPS['stage2']} steps): give stage 2 more steps"
    )
    assert not (out / "stage3").exists()
    print(
        f"\nkilled after {time.time() - t0:.1f} s at stage-2 step {done[-1]} (checkpoints: {sorted(c.name for c in ckpt.glob('step-*'))})"
    )

    r = run(out, log)
    assert r.report["stages_run"] == ["stage2", "stage3"]  # stage 1 was finished: not run again
    assert r.report["evaluation"] == tiny_run.report["evaluation"]  # exactly
    for stage in STEPS:
        assert losses(out, stage) == losses(tiny_run.out, stage), (
            stage
        )  # every step's loss, exactly
        assert metrics(out, stage)[-1]["loss"] == metrics(tiny_run.out, stage)[-1]["loss"], stage
    print(
        f"resumed in {r.seconds:.1f} s; evaluation and every stage's losses equal the uninterrupted run's exactly"
    )


def test_rerun_of_a_finished_run_skips_every_stage(tiny_run):
    out = tiny_run.out
    before = {s: (out / s / "metrics.jsonl").read_bytes() for s in STEPS}
    r = run(out, out.parent / "rerun.log")
    assert r.report["stages_run"] == []
    assert r.report["evaluation"] == tiny_run.report["evaluation"]
    assert {s: (out / s / "metrics.jsonl").read_bytes() for s in STEPS} == before
    assert r.seconds < 60 and r.seconds < tiny_run.seconds, (r.seconds, tiny_run.seconds)
    print(
        f"\nrerun of the finished run: {r.seconds:.1f} s (the full run: {tiny_run.seconds:.1f} s)"
    )


def test_a_kill_while_a_model_folder_is_written_heals_on_the_next_run(tiny_run, tmp_path):
    """The states a SIGKILL during a stage's model save can leave: the stage-3 model never renamed into place (its
    temporary sibling half-written), and stage 1's from before folders were written whole (weights but no config.json).
    The next run redoes exactly those saves, removes the leftovers and ends with the uninterrupted run's results."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(tiny_run.out, out)
    shutil.rmtree(out / "stage3" / "model")
    half = out / "stage3" / ".model.killed.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 100)  # a truncated write
    (out / "stage1" / "model" / "config.json").unlink()  # an old half-written folder
    r = run(out, tmp_path / "heal.log")
    assert r.report["stages_run"] == [
        "stage1",
        "stage3",
    ]  # their metrics were complete: only the save is redone
    assert not half.exists() and not list((out / "stage3").glob(".model.*"))
    for stage in ("stage1", "stage3"):
        assert (out / stage / "model" / "config.json").exists()
        assert (out / stage / "model" / "model.safetensors").read_bytes() == (
            tiny_run.out / stage / "model" / "model.safetensors"
        ).read_bytes(), stage
    assert r.report["evaluation"] == tiny_run.report["evaluation"]
