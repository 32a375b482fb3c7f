"""Worker for tests/test_train_distributed.py: run a few training steps, under torchrun or alone.

    python tests/_dist_worker.py OUT_DIR {toy|mlm} [--grad-accum N]

Rank 0 writes OUT_DIR/final.pt (weights) next to the trainer's metrics.jsonl.
"""

import os, sys

os.environ.setdefault("TRITON_INTERPRET", "1")
import argparse
import torch
from torch import nn
import nomic_repro  # noqa: F401
from nomic_repro.core import seed_everything
from nomic_repro.train import TrainConfig, Task, train, setup_distributed, wrap_ddp, unwrap


class Toy(Task):
    def micro_batches(self, step, rank, world_size, grad_accum):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 6, generator=g)
        y = x @ torch.linspace(-1, 1, 36).reshape(6, 6)
        rows = slice(rank * 16 // world_size, (rank + 1) * 16 // world_size)
        return list(zip(x[rows].chunk(grad_accum), y[rows].chunk(grad_accum)))

    def count(self, b):
        return b[0].shape[0]

    def loss(self, model, b):
        return ((model(b[0]) - b[1]) ** 2).sum(), {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("task", choices=["toy", "mlm"])
    ap.add_argument("--grad-accum", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rank, world, device = setup_distributed()
    if a.task == "toy":
        seed_everything(0)
        model = wrap_ddp(nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 6)), device)
        cfg = TrainConfig(
            max_steps=6, batch_size=16, grad_accum=a.grad_accum, lr=0.05, save_every=3
        )
        train(model, Toy(), cfg, a.out, progress=False)
    else:
        from nomic_repro.stage1 import run_mlm

        run_mlm(
            "tiny",
            a.out,
            progress=False,
            overrides=[
                "train.max_steps=4",
                "train.batch_size=8",
                f"train.grad_accum={a.grad_accum}",
                "model.num_layers=1",
                "model.hidden_size=64",
                "model.intermediate_size=96",
                "data.seq_len=32",
                "data.limit_docs=64",
            ],
        )
        model = None
    if rank == 0 and model is not None:
        torch.save(unwrap(model).state_dict(), os.path.join(a.out, "final.pt"))


if __name__ == "__main__":
    main()
