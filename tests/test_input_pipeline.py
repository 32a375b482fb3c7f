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
    if isinstance(x, (list, tuple)):
        return [t for e in x for t in flat(e)]
    return [x]


def same(a, b):
    fa, fb = flat(a), flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y)
        else:
            assert x == y


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
    assert_rank_slices_equal_full_build(
        task, [0, 1, 7, len(mlm_ds) // 16]
    )  # the last crosses an epoch
    # and W = 4 with 2 micro-batches each = the one-process step in 8
    full = task.micro_batches(2, 0, 1, 8)
    for r in range(4):
        same(task.micro_batches(2, r, 4, 2), full[2 * r : 2 * r + 2])


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
    resumed = list(
        step_batches(
            task, replace(cfg, num_workers=2, prefetch_factor=1), 6, 10, rank=1, world_size=2
        )
    )
    same(resumed, here[6:])


SMALL = [
    "train.max_steps=6",
    "train.save_every=3",
    "train.batch_size=8",
    "model.num_layers=1",
    "model.hidden_size=64",
    "model.intermediate_size=96",
    "data.seq_len=32",
    "data.limit_docs=64",
]


def test_stage1_trains_with_workers_same_losses_and_resume(tmp_path):
    def log(d):
        return [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]

    run_mlm("tiny", tmp_path / "w0", overrides=SMALL, progress=False)
    run_mlm(
        "tiny",
        tmp_path / "w2",
        overrides=SMALL + ["train.num_workers=2"],
        progress=False,
        max_steps=4,
    )
    run_mlm(
        "tiny", tmp_path / "w2", overrides=SMALL + ["train.num_workers=2"], progress=False
    )  # resumes at 4
    l0, l2 = log(tmp_path / "w0"), log(tmp_path / "w2")
    assert [r["step"] for r in l2] == list(range(1, 7))
    assert [r["loss"] for r in l2] == [r["loss"] for r in l0]  # bit-exact on CPU
    assert l2[-1]["loss"] < l2[0]["loss"]
    assert all(r["data_wait_s"] >= 0 for r in l0 + l2)
    # a run folder may change its worker count (not part of what is trained)
    run_mlm("tiny", tmp_path / "w2", overrides=SMALL + ["train.num_workers=0"], progress=False)


def unpadded(ids, am):
    return [r[m.bool()].tolist() for r, m in zip(ids, am)]


def pair_sources(n=40):
    from nomic_repro.stage2 import PairSource

    rows = read_records("supervised/medquad.jsonl.gz", ("query", "document"), limit=3 * n)[0]
    return {
        "a": (PairSource("a", "", "search_query", "search_document"), rows[:n]),
        "b": (PairSource("b", "", None, None), rows[n : 3 * n]),
    }


@pytest.mark.filterwarnings("ignore:epoch")
def test_stage2_rank_slice_equals_full_build():
    from nomic_repro.stage2 import PairDataset, ContrastiveTask

    task = ContrastiveTask(
        PairDataset(pair_sources(), seed=2), TOK, TrainConfig(batch_size=8), doc_max_length=48
    )
    for step in (0, 3, 11, 40):  # 40: the second epoch
        (full,) = task.micro_batches(step, 0, 1, 1)
        parts = [task.micro_batches(step, r, 2, 1)[0] for r in range(2)]
        for side in (0, 1):  # queries, documents: the same rows, each rank padded alone
            assert unpadded(*parts[0][side]) + unpadded(*parts[1][side]) == unpadded(*full[side])
        assert parts[0][2] == parts[1][2] == full[2]  # one source per step
        assert task.pairs.batch(step, 8, 1, 2) == (
            full[2],
            *(s[4:] for s in task.pairs.batch(step, 8)[1:]),
        )


def triplet_task(cfg=TrainConfig(batch_size=8), pretokenize=True):
    from nomic_repro.stage3 import TripletDataset, SupervisedTask

    src = pair_sources()
    docs = [d for _, rows in src.values() for _, d in rows]
    trip = {
        k: (
            s,
            [
                (q, d, [docs[(i * 7 + j) % len(docs)] for j in range(6)])
                for i, (q, d) in enumerate(rows)
            ],
        )
        for k, (s, rows) in src.items()
    }
    return SupervisedTask(
        TripletDataset(trip, n_negatives=3, seed=4),
        TOK,
        cfg,
        doc_max_length=48,
        pretokenize=pretokenize,
    )


@pytest.mark.filterwarnings("ignore:epoch")
def test_stage3_rank_slice_equals_full_build():
    task = triplet_task()
    for step in (0, 5, 12):
        full_b = task.pairs.batch(step, 8)
        halves = [task.pairs.batch(step, 8, r, 2) for r in range(2)]
        for k in (1, 2, 3):  # queries, positives, sampled negatives
            assert halves[0][k] + halves[1][k] == full_b[k]
        (full,) = task.micro_batches(step, 0, 1, 1)
        parts = [task.micro_batches(step, r, 2, 1)[0] for r in range(2)]
        assert unpadded(*parts[0][0]) + unpadded(*parts[1][0]) == unpadded(*full[0])
        # documents: [positives; negatives] per rank; the full build's rows regrouped the same way
        d = unpadded(*full[1])
        pos, neg = d[:8], d[8:]
        assert (
            unpadded(*parts[0][1]) == pos[:4] + neg[:12]
            and unpadded(*parts[1][1]) == pos[4:] + neg[12:]
        )
    # another step samples other negatives for the same rows' triplets
    assert task.pairs.batch(0, 8)[3] != task.pairs.batch(task.pairs.plan(8).steps_per_epoch, 8)[3]


@pytest.mark.filterwarnings("ignore:epoch")
def test_stage3_tokenized_once_equals_tokenizing_each_step():
    once, each = triplet_task(), triplet_task(pretokenize=False)
    for step, rank, world in [(0, 0, 1), (4, 1, 2), (13, 3, 4), (40, 1, 2)]:
        same(once.micro_batches(step, rank, world, 1), each.micro_batches(step, rank, world, 1))


@pytest.mark.parametrize("stage", [2, 3])
def test_stages_2_3_workers_same_batches_and_resume(stage):
    from nomic_repro.stage2 import PairDataset, ContrastiveTask

    cfg = TrainConfig(batch_size=8, seed=1)
    task = (
        ContrastiveTask(PairDataset(pair_sources(), seed=2), TOK, cfg, doc_max_length=48)
        if stage == 2
        else triplet_task(cfg)
    )
    here = list(step_batches(task, cfg, 0, 9, rank=1, world_size=2))
    same(list(step_batches(task, replace(cfg, num_workers=2), 0, 9, rank=1, world_size=2)), here)
    same(
        list(step_batches(task, replace(cfg, num_workers=2), 5, 9, rank=1, world_size=2)), here[5:]
    )


def test_stages_2_3_train_with_workers_same_losses(tmp_path):
    from nomic_repro.core import seed_everything
    from nomic_repro.model import NomicBert, NomicBertConfig
    from nomic_repro.checkpoint import save_pretrained
    from nomic_repro.stage2 import run_contrastive
    from nomic_repro.stage3 import run_finetune
    from nomic_repro.eval import load_encoder  # loads the miner

    seed_everything(0)
    save_pretrained(
        NomicBert(NomicBertConfig(hidden_size=64, num_layers=1, num_heads=2, intermediate_size=96)),
        tmp_path / "init",
        tokenizer=TOK,
    )
    fast = ["eval_tasks=[]", "data.doc_max_length=48", "train.batch_size=8", "train.max_steps=4"]
    logs = {}
    for w in (0, 2):
        s2, s3 = tmp_path / f"s2-{w}", tmp_path / f"s3-{w}"
        run_contrastive(
            "tiny",
            tmp_path / "init",
            s2,
            progress=False,
            overrides=fast
            + ["data.filter_model=null", "data.limit_per_source=40", f"train.num_workers={w}"],
        )
        run_finetune(
            "tiny",
            s2 / "model",
            s3,
            progress=False,
            load_encoder=load_encoder,
            overrides=fast + ["data.limit=40", f"train.num_workers={w}"],
        )
        logs[w] = [
            [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (s2, s3)
        ]
    for l0, l2 in zip(logs[0], logs[2]):
        assert [r["loss"] for r in l2] == [r["loss"] for r in l0] and len(
            l0
        ) == 4  # bit-exact on CPU
        assert all(r["data_wait_s"] >= 0 for r in l2)
