"""The embedding API at scale and against the v1.5 model-card recipe written out by hand."""

import warnings
from dataclasses import replace
import numpy as np
import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.model import NomicBert, NomicBertConfig
from nomic_repro.embed import Embedder, MATRYOSHKA_DIMS, mean_pool, postprocess
from nomic_repro.checkpoint import save_pretrained

CFG = NomicBertConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=96)


@pytest.fixture(scope="module")
def emb():
    seed_everything(0)
    return Embedder(NomicBert(CFG))


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.text(alphabet="abc xyz.", max_size=120), min_size=1, max_size=25), st.integers(1, 8)
)
def test_order_and_values_do_not_depend_on_batching(emb, texts, bs):
    a = emb.encode(texts, task="query", batch_size=bs)
    b = emb.encode(texts, task="query", batch_size=len(texts))
    assert a.shape == (len(texts), 64)
    assert_close(torch.from_numpy(a), torch.from_numpy(b), rtol=1e-4, atol=1e-5)


def test_v15_recipe_by_hand(emb):
    "The nomic-embed-text-v1.5 model card: mean pool, layer_norm over 768, truncate, normalize."
    texts = ["search_query: What is TSNE?", "search_query: Who is Laurens van der Maaten?"]
    e15 = Embedder(emb.model, emb.tokenizer, layer_norm=True)
    b = emb.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = emb.model(b["input_ids"], b["attention_mask"])
    m = b["attention_mask"][..., None].float()
    pooled = (h * m).sum(1) / m.sum(1)
    for d in (64, 32, 16):
        want = F.normalize(F.layer_norm(pooled, (64,))[:, :d], p=2, dim=1)
        assert_close(torch.from_numpy(e15.encode(texts, dim=d)), want, rtol=1e-5, atol=1e-6)


def test_prefix_changes_the_embedding(emb):
    q = emb.encode("rotary embeddings", task="search_query")
    d = emb.encode("rotary embeddings", task="search_document")
    assert q.shape == (64,) and not np.allclose(q, d)
    assert np.allclose(emb.encode("search_query: rotary embeddings"), q, atol=1e-6)


def test_truncation_counts_and_keeps_sep(emb):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        v = emb.encode(["tok " * 5000, "ok", "tok " * 3000], max_length=128)
    assert v.shape == (3, 64)
    msgs = [str(x.message) for x in w]
    assert any("2 of 3 texts were longer than max_length=128" in m for m in msgs), msgs
    # truncation keeps [SEP]: the long text equals the same text cut by hand to 126 word pieces + [CLS]/[SEP]
    cut = emb.tokenizer.decode(emb.tokenizer("tok " * 5000)["input_ids"][1:127])
    assert np.allclose(v[0], emb.encode([cut], max_length=128)[0], atol=1e-5)


def test_from_pretrained_round_trip_and_layer_norm_switch(tmp_path, emb):
    save_pretrained(emb.model, tmp_path / "nomic-embed-text-v1.5-tiny")
    e = Embedder.from_pretrained(tmp_path / "nomic-embed-text-v1.5-tiny")
    assert e.layer_norm and e.model.config.rotary_scaling_factor == 2.0 and e.max_length == 8192
    e1 = Embedder.from_pretrained(
        tmp_path / "nomic-embed-text-v1.5-tiny", layer_norm=False, rotary_scaling_factor=None
    )
    assert not e1.layer_norm and e1.max_length == 2048
    texts = ["a", "b c d"]
    assert_close(
        torch.from_numpy(e1.encode(texts)), torch.from_numpy(emb.encode(texts)), rtol=0, atol=1e-6
    )


def test_postprocess_contracts():
    x = torch.randn(3, 768)
    for d in MATRYOSHKA_DIMS:
        assert postprocess(x, layer_norm=True, dim=d).shape == (3, d)
    with pytest.raises(ValueError, match="dim must be"):
        postprocess(x, dim=0)
    with pytest.raises(ValueError, match="dim must be"):
        postprocess(x, dim=769)
    assert_close(
        mean_pool(torch.ones(2, 4, 3), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])), torch.ones(2, 3)
    )
