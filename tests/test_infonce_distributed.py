"""With two gloo processes, the gathered InfoNCE loss and every gradient equal one process on the whole batch."""

import subprocess, sys
from pathlib import Path
import pytest, torch
from nomic_repro.core import assert_close
from nomic_repro.losses import info_nce

sys.path.insert(0, str(Path(__file__).parent))
from _infonce_worker import batch  # noqa: E402
from _launch import launch_env, launcher  # noqa: E402


@pytest.mark.parametrize("mode", ["negatives", "sym"])
def test_gathered_infonce_equals_single_process(tmp_path, mode):
    cmd = [*launcher(2), str(Path(__file__).parent / "_infonce_worker.py"), str(tmp_path), mode]
    r = subprocess.run(cmd, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    parts = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2)]
    q, d, neg = (x.clone().requires_grad_() for x in batch())
    sym = mode == "sym"
    loss = info_nce(q, d, negatives=None if sym else neg, symmetric=sym, reduction="sum")
    loss.backward()
    assert_close(parts[0]["loss"] + parts[1]["loss"], loss.detach(), rtol=1e-12, atol=1e-12)
    assert_close(torch.cat([p["q"] for p in parts]), q.grad, rtol=1e-10, atol=1e-12)
    assert_close(torch.cat([p["d"] for p in parts]), d.grad, rtol=1e-10, atol=1e-12)
    if not sym:
        assert_close(torch.cat([p["neg"] for p in parts]), neg.grad, rtol=1e-10, atol=1e-12)
