"""Input pipeline at the paper's size: per-rank time to build one optimizer step's micro-batches,
against the GPU step time the planner estimates.

    python kernels/data.py [--stages mlm contrastive finetune] [--gpus 8] [--gpu h100] \
        [--mfu 0.4] [--workers 2] [--steps 8] [--limit N] [--out kernels/results]

For each stage of the `base` preset, the task that stage trains with (`MLMTask`, `ContrastiveTask`,
`SupervisedTask`) at the preset's batch size, accumulation and maximum lengths, as rank 1 of
`--gpus`, on the vendored corpus: stage 1 Wikipedia packed into 2,048-token rows (the preset's
'concat' packing); stage 2 the four demo pair sources, each repeated to two global batches of
16,384 (EpochPlan needs a whole batch per source; repeated pairs cost what new ones cost); stage 3
MedQuAD with 7 of 20 stored negatives sampled per query (the negatives are other answers, picked
by a fixed rule: mining needs a model, and what a step does with stored negatives is the same).

First the correctness part: rank 1's rows equal the rows of the whole-batch build (stage 1: the
tensors, bit for bit; stages 2 and 3: the texts), and worker processes give what this process
gives. Then two timings per stage:
1. inline: `task.micro_batches` in this process, median over `--steps` steps (what the training
   loop waited for every step before `train.num_workers`);
2. workers: `step_batches` with `--workers` worker processes (prefetch 2), seconds per step at
   steady state (from the first batch's arrival to the last's, over `--steps` steps): how fast
   the workers deliver, so the loop waits only where this exceeds the GPU step.
GPU step: the planner's (`nomic_repro.plan.plan("base", gpus, gpu, mfu)`: the stage's wall hours
over its steps), which assumes every sequence at the preset's maximum length; and the same
formula (`plan.training_flops`) at the real token counts of the rows built, every rank like
rank 1. ratio = workers' seconds per step / GPU step; the goal is <= 0.2. Writes
kernels/results/data-<device>.csv (device: cpu-<cores>cores, the cores this process may use).
"""

import argparse, os, statistics, sys, time
from dataclasses import replace
from pathlib import Path
import torch
import nomic_repro  # noqa: F401
from nomic_repro import plan as planner
from nomic_repro.pipeline import get_pipeline_preset
from nomic_repro.checkpoint import load_tokenizer
from nomic_repro.data import read_records, tokenize_documents, SequenceDataset
from nomic_repro.train import step_batches
from nomic_repro.report import write_results
from nomic_repro.stage1 import get_mlm_preset, MLMTask
from nomic_repro.stage2 import STAGE2_PRESETS, DEMO_PAIR_SOURCES, PairDataset, ContrastiveTask
from nomic_repro.stage3 import STAGE3_PRESETS, TripletDataset, SupervisedTask

RANK = 1


def device_name():
    if torch.cuda.is_available():
        return torch.cuda.get_device_name().replace(" ", "-")
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu-{n}cores"


def mlm_task(tok, limit):
    p = get_mlm_preset("base")
    texts = [t for (t,) in read_records("mlm/wikipedia.jsonl.gz", ("text",), limit=limit)[0]]
    seqs = tokenize_documents(texts, tok, p.data.seq_len, p.data.packing)
    ds = SequenceDataset(seqs, pad_id=tok.pad_token_id, seed=p.train.seed)
    return MLMTask(ds, tok, p.train, p.data.mlm_prob), p.train


def repeated(rows, n):
    "`rows` repeated until there are at least `n`."
    return (rows * (n // len(rows) + 1))[: max(n, len(rows))]


def contrastive_task(tok, limit):
    p = STAGE2_PRESETS["base"]
    srcs = {}
    for s in DEMO_PAIR_SOURCES:
        rows = read_records(s.path, ("query", "document"), limit=limit)[0]
        srcs[s.name] = (s, repeated(rows, 2 * p.train.batch_size))
    task = ContrastiveTask(
        PairDataset(srcs, seed=p.train.seed),
        tok,
        p.train,
        query_max_length=p.data.query_max_length,
        doc_max_length=p.data.doc_max_length,
    )
    return task, p.train


def finetune_task(tok, limit):
    p = STAGE3_PRESETS["base"]
    src = p.data.sources[0]  # MedQuAD
    rows = read_records(src.path, ("query", "document"), limit=limit)[0]
    rows = repeated(rows, 2 * p.train.batch_size)
    docs = [d for _, d in rows]
    k = p.data.mine_top_k
    trip = [
        (q, d, [docs[(i * 31 + 7 * j + 1) % len(docs)] for j in range(k)])
        for i, (q, d) in enumerate(rows)
    ]
    ds = TripletDataset({src.name: (src, trip)}, p.data.n_negatives, p.train.seed)
    task = SupervisedTask(
        ds,
        tok,
        p.train,
        query_max_length=p.data.query_max_length,
        doc_max_length=p.data.doc_max_length,
    )
    return task, p.train


TASKS = {"mlm": mlm_task, "contrastive": contrastive_task, "finetune": finetune_task}


def rows_of(tensors):
    "Real-token rows of every (ids, mask) pair in a micro-batch, as lists."
    if len(tensors) == 3 and isinstance(tensors[0], torch.Tensor):  # stage 1: ids, mask, labels
        ids, am, lab = tensors
        return [(i[m.bool()].tolist(), l[m.bool()].tolist()) for i, m, l in zip(ids, am, lab)]
    (qi, qm), (di, dm), _ = tensors
    real = lambda ids, am: [r[m.bool()].tolist() for r, m in zip(ids, am)]
    return real(qi, qm) + real(di, dm)


def check(stage, task, cfg, world):
    "Rank 1's build = the whole-batch build's rows; workers = this process (small batches)."
    small = replace(cfg, batch_size=16 * world if stage == "mlm" else 8 * world, grad_accum=1)
    task.cfg = small
    try:
        if stage == "mlm":
            full = task.micro_batches(0, 0, 1, world)
            (mine,) = task.micro_batches(0, RANK, world, 1)
            assert all(torch.equal(a, b) for a, b in zip(mine, full[RANK])), "stage 1 rank slice"
        else:
            B = small.batch_size
            full, mine = task.pairs.batch(0, B), task.pairs.batch(0, B, RANK, world)
            lo, hi = RANK * B // world, (RANK + 1) * B // world
            assert mine == (full[0], *(side[lo:hi] for side in full[1:])), f"{stage} rank slice"
        here = list(step_batches(task, small, 0, 4, RANK, world))
        ahead = list(step_batches(task, replace(small, num_workers=2), 0, 4, RANK, world))
        for h, a in zip(here, ahead):
            for hb, ab in zip(h, a):
                assert rows_of(hb) == rows_of(ab), f"{stage} workers"
    finally:
        task.cfg = cfg


def real_sequences(stage, mbs, world):
    "[(1, length)] of every sequence of one rank's step, times `world` (every rank like this one)."
    if stage == "mlm":
        lens = [int(n) for b in mbs for n in b[1].sum(-1)]
    else:
        lens = [int(n) for b in mbs for side in b[:2] for n in side[1].sum(-1)]
    return [(world, L) for L in lens]


def gpu_step_real(stage, mbs, world, gpu, mfu):
    p = get_pipeline_preset("base")
    w = planner.stage_workload(p, stage)
    f = planner.training_flops(
        w["model"],
        real_sequences(stage, mbs, world),
        mlm_prob=w["mlm_prob"],
        grad_cache=w["grad_cache_chunk"] is not None,
    )
    spec = planner.get_gpu(gpu)
    return f["total"] / (spec.bf16_tflops_dense * 1e12 * mfu * world)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stages", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="records read per source")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    tok = load_tokenizer()
    plan = {s["stage"]: s for s in planner.plan("base", a.gpus, a.gpu, mfu=a.mfu)["stages"]}
    rows = []
    for stage in a.stages:
        task, cfg = TASKS[stage](tok, a.limit)
        check(stage, task, cfg, a.gpus)
        times, mbs = [], None
        for s in range(a.steps):
            t0 = time.perf_counter()
            mbs = task.micro_batches(s, RANK, a.gpus, cfg.grad_accum)
            times.append(time.perf_counter() - t0)
        inline = statistics.median(times)
        feed = step_batches(
            task,
            replace(cfg, num_workers=a.workers, prefetch_factor=2),
            0,
            a.steps + 1,
            RANK,
            a.gpus,
        )
        next(feed)
        t0 = time.perf_counter()
        for _ in feed:
            pass
        ahead = (time.perf_counter() - t0) / a.steps
        gpu = plan[stage]["wall_hours"] * 3600 / plan[stage]["steps"]
        gpu_real = gpu_step_real(stage, mbs, a.gpus, a.gpu, a.mfu)
        tokens = sum(n * L for n, L in real_sequences(stage, mbs, 1))
        row = {
            "stage": stage,
            "preset": "base",
            "gpus": f"{a.gpus}x{a.gpu}",
            "mfu": a.mfu,
            "rank_rows": sum(n for n, _ in real_sequences(stage, mbs, 1)),
            "rank_tokens": tokens,
            "grad_accum": cfg.grad_accum,
            "inline_s": inline,
            "workers": a.workers,
            "workers_s_per_step": ahead,
            "gpu_step_s": gpu,
            "ratio": ahead / gpu,
            "inline_ratio": inline / gpu,
            "gpu_step_s_real_lengths": gpu_real,
            "ratio_real_lengths": ahead / gpu_real,
            "device": device_name(),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }
        rows.append(row)
        verdict = "ok" if row["ratio"] <= 0.2 else "MISSES the 0.2 goal"
        print(
            f"{stage:12s} rank {RANK}/{a.gpus}: {row['rank_rows']} sequences, {tokens:,} tokens;"
            f" inline {inline:.3f} s, {a.workers} workers {ahead:.3f} s/step; GPU step"
            f" {gpu:.3f} s (planner) / {gpu_real:.3f} s (real lengths): ratio {row['ratio']:.3f}"
            f" / {row['ratio_real_lengths']:.3f} ({verdict})",
            flush=True,
        )
    stem = f"data-{rows[0]['device']}"
    print(f"wrote {write_results(rows, a.out, stem, digits=4)}")


if __name__ == "__main__":
    sys.exit(main())
