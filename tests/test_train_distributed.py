"""Two gloo processes (spawned here with torchrun) take exactly the gradient steps one process takes on the
combined batch: same losses, same final weights. Also gradient accumulation, and exact resume of stage 1."""

import json, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from nomic_repro.core import assert_close

HERE = Path(__file__).parent
WORKER = HERE / "_dist_worker.py"
sys.path.insert(0, str(HERE))
from _launch import launch_env, launcher  # noqa: E402


def run(out, task, nproc=1, grad_accum=1):
    cmd = [*launcher(nproc), str(WORKER), str(out), task, "--grad-accum", str(grad_accum)]
    r = subprocess.run(cmd, env=launch_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def weights(out, task):
    if task == "toy":
        return torch.load(Path(out) / "final.pt", weights_only=True)
    return load_file(str(Path(out) / "model" / "model.safetensors"))


@pytest.mark.parametrize("task", ["toy", "mlm"])
def test_two_gloo_processes_equal_one(tmp_path, task):
    one = run(tmp_path / "one", task)
    two = run(tmp_path / "two", task, nproc=2)
    acc = run(tmp_path / "acc", task, grad_accum=2)
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for other in (two, acc):
        assert_close(
            torch.tensor([r["loss"] for r in other]),
            torch.tensor([r["loss"] for r in one]),
            rtol=1e-5,
            atol=1e-6,
        )
    w1, w2, wa = (
        weights(tmp_path / "one", task),
        weights(tmp_path / "two", task),
        weights(tmp_path / "acc", task),
    )
    for k in w1:
        assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-6)
        assert_close(wa[k], w1[k], rtol=1e-4, atol=1e-6)


def test_stage1_resume_matches_uninterrupted(tmp_path):
    from nomic_repro.stage1 import run_mlm

    sets = [
        "train.max_steps=8",
        "train.save_every=3",
        "train.batch_size=8",
        "model.num_layers=1",
        "model.hidden_size=64",
        "model.intermediate_size=96",
        "data.seq_len=32",
        "data.limit_docs=64",
    ]
    run_mlm("tiny", tmp_path / "a", overrides=sets, progress=False)
    run_mlm(
        "tiny", tmp_path / "b", overrides=sets, max_steps=5, progress=False
    )  # stops at 5 (checkpoint 3 and 5)
    # simulate a kill after step 7: extra log lines past the last checkpoint must be dropped on resume
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "loss": 123.0}) + "\n")
    run_mlm("tiny", tmp_path / "b", overrides=sets, progress=False)
    la = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lb] == list(range(1, 9))
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]  # bit-exact on CPU
    wa, wb = (
        load_file(str(tmp_path / "a" / "model" / "model.safetensors")),
        load_file(str(tmp_path / "b" / "model" / "model.safetensors")),
    )
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_stage1_nan_stops_with_checkpoint_intact(tmp_path, monkeypatch):
    from nomic_repro import stage1
    from nomic_repro.train import TrainingDiverged, list_checkpoints

    real_forward, calls = stage1.MLMObjective.forward, {"n": 0}

    def flaky(self, *a):
        calls["n"] += 1
        loss, correct = real_forward(self, *a)
        return (loss * float("nan") if calls["n"] == 5 else loss), correct

    monkeypatch.setattr(stage1.MLMObjective, "forward", flaky)
    sets = [
        "train.max_steps=8",
        "train.save_every=2",
        "train.batch_size=4",
        "model.num_layers=1",
        "model.hidden_size=64",
        "model.intermediate_size=96",
        "data.seq_len=32",
        "data.limit_docs=32",
    ]
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 5; .*step-0000004"):
        stage1.run_mlm("tiny", tmp_path, overrides=sets, progress=False)
    ck = list_checkpoints(tmp_path)
    assert [c.name for c in ck] == ["step-0000002", "step-0000004"]
    for c in ck:
        load_file(str(c / "model.safetensors"))  # complete and readable
    monkeypatch.setattr(stage1.MLMObjective, "forward", real_forward)
    res = stage1.run_mlm(
        "tiny", tmp_path, overrides=sets, progress=False
    )  # resumes from the last good checkpoint
    assert (res["start_step"], res["end_step"]) == (4, 8)
