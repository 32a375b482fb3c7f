"""NomicBert(attn_impl="triton") -- packed tokens through the Triton varlen kernel (interpreter on CPU) --
gives the same hidden states and parameter gradients as attn_impl="torch"."""

import copy
import pytest, torch
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.model import NomicBert, NomicBertConfig


@pytest.mark.parametrize("ntk", [None, 2.0])
def test_triton_path_matches_torch_path(ntk):
    seed_everything(0)
    cfg = NomicBertConfig(
        vocab_size=120,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=96,
        max_trained_positions=16,
        rotary_scaling_factor=ntk,
    )
    torch_m = NomicBert(cfg, attn_impl="torch")
    triton_m = copy.deepcopy(torch_m)
    triton_m.attn_impl = "triton"
    ids = torch.randint(1, 120, (3, 37))
    am = (torch.arange(37)[None] < torch.tensor([37, 9, 1])[:, None]).long()
    real = am.bool()
    outs, grads = [], []
    for m in (torch_m, triton_m):
        h = m(ids, am)
        (h[real] ** 2).mean().backward()
        outs.append(h.detach())
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    assert_close(outs[1][real], outs[0][real], rtol=1e-5, atol=1e-5)
    assert_close(outs[1][~real], torch.zeros_like(outs[1][~real]), rtol=0, atol=0)
    for n in grads[0]:
        assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-6)
