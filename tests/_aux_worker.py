"""Worker for tests/test_aux_weight_distributed.py (run under torchrun, or imported for W = 1): each rank takes its share
of one global batch through stage 2's `ContrastiveTask` step on a DDP-wrapped mixture-of-experts bi-encoder, plainly and
through GradCache, and saves its summed loss, its metrics and the gradients DDP leaves (averaged over the ranks)."""

import os, sys
import torch
import torch.distributed as dist
import nomic_repro  # noqa: F401
from nomic_repro.core import seed_everything
from nomic_repro.model import NomicBertConfig
from nomic_repro.model_moe import NomicBertMoE
from nomic_repro.losses import BiEncoder
from nomic_repro.stage2 import ContrastiveTask
from nomic_repro.train import TrainConfig, wrap_ddp

B, TAU, COEF = 8, 0.05, 0.5  # global batch, temperature, router_aux_loss_coef
CFG = NomicBertConfig(
    vocab_size=100,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=48,
    activation="gelu",
    num_experts=4,
    moe_top_k=2,
    moe_every_n_layers=2,
    router_aux_loss_coef=COEF,
)


def model():
    seed_everything(0)
    return BiEncoder(NomicBertMoE(CFG)).double()


def batch(seed=1):
    "((query ids, mask), (document ids, mask)) of the global batch: queries up to 6 tokens, documents up to 12, padded."
    g = torch.Generator().manual_seed(seed)

    def side(S):
        am = (torch.arange(S)[None] < torch.randint(2, S + 1, (B, 1), generator=g)).long()
        return torch.randint(1, 100, (B, S), generator=g) * am, am

    return side(6), side(12)


def shard(b, r, w):
    "Rank r's rows of the global batch `b`, as the task's micro-batch."
    sl = slice(r * B // w, (r + 1) * B // w)
    return tuple((ids[sl], am[sl]) for ids, am in b) + ("toy",)


def step(chunk, r, w):
    "One step of rank r of w (the trainer's scale W/B), GradCache chunks of `chunk` rows or none."
    m = wrap_ddp(model(), torch.device("cpu"))
    task = ContrastiveTask(
        None, None, TrainConfig(batch_size=B), temperature=TAU, grad_cache_chunk=chunk
    )
    loss, metrics = task.loss_and_backward(m, shard(batch(), r, w), w / B)
    inner = getattr(m, "module", m)
    return {
        "loss": float(loss),
        "metrics": metrics,
        "grads": {n: p.grad.clone() for n, p in inner.named_parameters()},
    }


def main():
    out = sys.argv[1]
    dist.init_process_group("gloo")
    r, w = dist.get_rank(), dist.get_world_size()
    torch.save(
        {"plain": step(None, r, w), "grad_cache": step(3, r, w)}, os.path.join(out, f"rank{r}.pt")
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
