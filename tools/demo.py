"""`make demo`: the richest end-to-end thing the package can do so far.

Today: the positional machinery NomicBERT serves long inputs with. It builds the RoPE tables for a 2048-token
batch and for an 8192-token batch with Dynamic NTK, checks them against transformers' native `nomic_bert`
rotary embedding, and prints the per-length base. Later issues grow this into the full tiny pipeline
(`nomic-repro run --preset tiny`).
"""
import time
t0 = time.time()
import torch
from nomic_repro.core import seed_everything  # nomic_repro first: on a CPU it must set TRITON_INTERPRET before triton loads
from nomic_repro.rope import apply_rotary
from nomic_repro.ntk import DynamicNTKRotaryEmbedding, dynamic_ntk_base
from transformers import NomicBertConfig
from transformers.models.nomic_bert.modeling_nomic_bert import NomicBertRotaryEmbedding

seed_everything(0)
rot = DynamicNTKRotaryEmbedding(64, base=1000.0, max_trained=2048, alpha=2.0)
print(f"{'length':>7} {'RoPE base':>10} {'slowest wavelength':>19} {'max |ours - transformers|':>26}")
for L in (512, 2048, 4096, 8192):
    cfg = NomicBertConfig(hidden_size=768, num_attention_heads=12, max_position_embeddings=2048,
                          rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0})
    q = torch.randn(1, L, 12, 64)
    cos, sin = rot(L)
    hf_cos, hf_sin = NomicBertRotaryEmbedding(cfg)(q, torch.arange(L)[None])
    err = (apply_rotary(q, cos, sin) - apply_rotary(q, hf_cos[0], hf_sin[0])).abs().max().item()
    assert err < 1e-3, err
    base = dynamic_ntk_base(L)
    print(f"{L:>7} {base:>10.1f} {2 * 3.14159265 * base ** (62 / 64):>19.0f} {err:>26.2e}")
print(f"demo finished in {time.time() - t0:.1f} s")
