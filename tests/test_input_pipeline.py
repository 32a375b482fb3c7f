"""The input pipeline at real size: each rank builds only its slice of a step, in background workers, and gets
exactly what the whole-batch build gives that slice, whatever the world size, the worker count or the resume step.

- per-rank slice = the full build's slice, for W = 2, in all three stages (and the v2 language mixture);
- `num_workers=2` gives the same batches as `num_workers=0`, and starting at step k gives the uninterrupted
  run's batches from k on (exact resume);
- the loop still trains with workers: the same losses, to the bit, as without them, and `data_wait_s` logged.
"""
import json
from dataclasses import replace
import pytest, torch
from nomic_repro.checkpoint import load_tokenizer
from nomic_repro.data import read_records, tokenize_documents, SequenceDataset, LanguageMixture
from nomic_repro.train import TrainConfig, step_batches
from nomic_repro.stage1 import MLMTask, run_mlm

TOK = load_tokenizer()


def flat(x):
    "Every tensor and string of a (nested) batch, in order."
    if isinstance(x, (list, tuple)): return [t for e in x for t in flat(e)]
    return [x]


def same(a, b):
    fa, fb = flat(a), flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        if isinstance(x, torch.Tensor): assert torch.equal(x, y)
        else: assert x == y


def assert_rank_slices_equal_full_build(task, steps, world=2):
    "Rank r of `world` (one micro-batch, built alone) = micro-batch r of the one-process step with `world` micro-batches."
    for step in steps:
        full = task.micro_batches(step, 0, 1, world)
        for r in range(world):
            (mine,) = task.micro_batches(step, r, world, 1)
            same(mine, full[r])


@pytest.fixture(scope="module")
def mlm_ds():
    texts = [t for (t,) in read_records("mlm/wikipedia.jsonl.gz", ("text",), limit=200)[0]]
    return SequenceDataset(tokenize_documents(texts, TOK, 48), pad_id=TOK.pad_token_id, seed=3)


def test_stage1_rank_slice_equals_full_build(mlm_ds):
    task = MLMTask(mlm_ds, TOK, TrainConfig(batch_size=16, seed=5))
    assert len(mlm_ds) % 16
    assert_rank_slices_equal_full_build(task, [0, 1, 7, len(mlm_ds) // 16])   # the last crosses an epoch
    # and W = 4 with 2 micro-batches each = the one-process step in 8
    full = task.micro_batches(2, 0, 1, 8)
    for r in range(4): same(task.micro_batches(2, r, 4, 2), full[2 * r : 2 * r + 2])


def test_stage1_language_mixture_rank_slice(mlm_ds):
    half = len(mlm_ds) // 2
    a = SequenceDataset([mlm_ds[i] for i in range(half)], seed=1)
    b = SequenceDataset([mlm_ds[i] for i in range(half, len(mlm_ds))], seed=2)
    mix = LanguageMixture({"a": a, "b": b}, alpha=0.3, seed=0)
    assert_rank_slices_equal_full_build(MLMTask(mix, TOK, TrainConfig(batch_size=8)), range(6))


def test_workers_give_the_same_batches_and_resume_exactly(mlm_ds):
    cfg = TrainConfig(batch_size=16, grad_accum=2, seed=1)
    task = MLMTask(mlm_ds, TOK, cfg)
    here = list(step_batches(task, cfg, 0, 10, rank=1, world_size=2))
    ahead = list(step_batches(task, replace(cfg, num_workers=2), 0, 10, rank=1, world_size=2))
    same(ahead, here)
    resumed = list(step_batches(task, replace(cfg, num_workers=2, prefetch_factor=1), 6, 10, rank=1, world_size=2))
    same(resumed, here[6:])


SMALL = ["train.max_steps=6", "train.save_every=3", "train.batch_size=8", "model.num_layers=1", "model.hidden_size=64",
         "model.intermediate_size=96", "data.seq_len=32", "data.limit_docs=64"]


def test_stage1_trains_with_workers_same_losses_and_resume(tmp_path):
    def log(d): return [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    run_mlm("tiny", tmp_path / "w0", overrides=SMALL, progress=False)
    run_mlm("tiny", tmp_path / "w2", overrides=SMALL + ["train.num_workers=2"], progress=False, max_steps=4)
    run_mlm("tiny", tmp_path / "w2", overrides=SMALL + ["train.num_workers=2"], progress=False)  # resumes at 4
    l0, l2 = log(tmp_path / "w0"), log(tmp_path / "w2")
    assert [r["step"] for r in l2] == list(range(1, 7))
    assert [r["loss"] for r in l2] == [r["loss"] for r in l0]              # bit-exact on CPU
    assert l2[-1]["loss"] < l2[0]["loss"]
    assert all(r["data_wait_s"] >= 0 for r in l0 + l2)
    # a run folder may change its worker count (not part of what is trained)
    run_mlm("tiny", tmp_path / "w2", overrides=SMALL + ["train.num_workers=0"], progress=False)
