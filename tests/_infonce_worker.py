"""Worker for tests/test_infonce_distributed.py (run under torchrun): each rank holds half of a global batch,
computes the gathered InfoNCE (sum over its queries), backpropagates, and saves its loss and gradients."""

import os, sys
import torch
import torch.distributed as dist
import torch.nn.functional as F
import nomic_repro  # noqa: F401
from nomic_repro.losses import info_nce


def batch(seed=0, B=8, n=2, D=16):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=-1)
    d = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=-1)
    neg = F.normalize(torch.randn(B, n, D, generator=g, dtype=torch.float64), dim=-1)
    return q, d, neg


def main():
    out, symmetric = sys.argv[1], sys.argv[2] == "sym"
    dist.init_process_group("gloo")
    r, w = dist.get_rank(), dist.get_world_size()
    q, d, neg = batch()
    sl = slice(r * len(q) // w, (r + 1) * len(q) // w)
    q, d, neg = (x[sl].clone().requires_grad_() for x in (q, d, neg))
    loss = info_nce(
        q, d, negatives=None if symmetric else neg, symmetric=symmetric, reduction="sum"
    )
    loss.backward()
    torch.save(
        {"loss": loss.detach(), "q": q.grad, "d": d.grad, "neg": neg.grad},
        os.path.join(out, f"rank{r}.pt"),
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
