"""`make demo`: the richest end-to-end thing the package does so far, on CPU, offline.

1. RoPE and Dynamic NTK: the rotary tables for 512…8192-token batches against transformers' native `nomic_bert`.
2. NomicBERT: the v1 architecture (136,731,648 parameters at full size; 4 layers here so it runs in seconds),
   randomly initialised, checked against transformers' NomicBertModel with the same weights.
3. Embeddings: `Embedder.encode` with task prefixes, Matryoshka dims and a 3,000-token input (Dynamic NTK).
4. Interop: the model saved in the transformers layout loads in sentence-transformers with the same embeddings.

The weights are random (no training has run yet), so similarities are not meaningful. Later issues grow this
into the full tiny pipeline (`nomic-repro run --preset tiny`: three training stages, evaluation, report).
"""

import tempfile, time, warnings

t0 = time.time()
import numpy as np
import torch
import nomic_repro  # first: on a CPU it must set TRITON_INTERPRET before triton loads (transformers imports it)
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.rope import apply_rotary
from nomic_repro.ntk import DynamicNTKRotaryEmbedding, dynamic_ntk_base
from nomic_repro.model import NomicBert, NomicBertConfig
from nomic_repro.checkpoint import save_pretrained, load_pretrained
from nomic_repro.embed import Embedder
import transformers
from transformers.models.nomic_bert.modeling_nomic_bert import NomicBertRotaryEmbedding

seed_everything(0)
print(
    "1. RoPE tables, ours vs transformers' nomic_bert (Dynamic NTK, alpha=2, trained length 2048)"
)
rot = DynamicNTKRotaryEmbedding(64, base=1000.0, max_trained=2048, alpha=2.0)
cfg_hf = transformers.NomicBertConfig(
    rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0}
)
print(f"   {'length':>7} {'RoPE base':>10} {'max |ours - transformers|':>26}")
for L in (512, 2048, 4096, 8192):
    q = torch.randn(1, L, 12, 64)
    cos, sin = rot(L)
    hf_cos, hf_sin = NomicBertRotaryEmbedding(cfg_hf)(q, torch.arange(L)[None])
    err = (apply_rotary(q, cos, sin) - apply_rotary(q, hf_cos[0], hf_sin[0])).abs().max().item()
    assert err < 1e-3, err
    print(f"   {L:>7} {dynamic_ntk_base(L):>10.1f} {err:>26.2e}")

print("\n2. NomicBERT v1 architecture")
with torch.device("meta"):
    full = NomicBert(NomicBertConfig())
print(f"   full config: {sum(p.numel() for p in full.parameters()):,} parameters (paper: 137M)")
cfg = NomicBertConfig(num_layers=4, rotary_scaling_factor=2.0)
model = NomicBert(cfg).eval()
tmp = tempfile.mkdtemp()
save_pretrained(model, f"{tmp}/tx", layout="transformers")
hf = transformers.AutoModel.from_pretrained(f"{tmp}/tx").eval()
emb = Embedder(load_pretrained(f"{tmp}/tx"))
b = emb.tokenizer(
    ["search_query: what is dynamic NTK?", "search_document: a short document"],
    padding=True,
    return_tensors="pt",
)
with torch.no_grad():
    m = b["attention_mask"].bool()
    rep = assert_close(
        model(b["input_ids"], b["attention_mask"])[m],
        hf(**b).last_hidden_state[m],
        rtol=0,
        atol=1e-4,
    )
print(f"   4-layer model vs transformers' NomicBertModel (same weights): {rep}")

print("\n3. Embedder.encode")
texts = [
    "What is Nomic Embed?",
    "Nomic Embed is a long-context text embedder.",
    "Rotary embeddings rotate queries and keys.",
    "word " * 3000,
]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for dim in (768, 256, 64):
        e = emb.encode(texts, task="search_document", dim=dim, batch_size=2)
        print(
            f"   dim {dim:>3}: shape {e.shape}, norms {np.round(np.linalg.norm(e, axis=1), 4).tolist()}"
        )
print(
    f"   the 3,000-token text ran with RoPE base {emb.model.rotary.base_for(3002):.0f} (Dynamic NTK)"
)

print("\n4. sentence-transformers loads our save")
from sentence_transformers import SentenceTransformer

st = SentenceTransformer(f"{tmp}/tx", device="cpu")
ours = Embedder(load_pretrained(f"{tmp}/tx")).encode(texts[:3], task="search_query")
theirs = st.encode(texts[:3], prompt_name="query")
print(f"   max |ours - SentenceTransformer| = {np.abs(ours - theirs).max():.2e}")
assert np.abs(ours - theirs).max() < 1e-5
print(f"\ndemo finished in {time.time() - t0:.1f} s")
