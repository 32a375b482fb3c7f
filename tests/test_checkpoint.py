"""Checkpoint parity and layouts beyond the notebook's tiny examples: the full 12-layer config, the MLM head,
Dynamic NTK through config files, the original Nomic key table (the tensor names in nomic-embed-text-v1's
model.safetensors), nomic-bert-2048's prefix, legacy .bin and sharded safetensors, and every bad-input path."""

import json
from dataclasses import replace
import pytest, torch, transformers
from safetensors.torch import save_file
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.model import NomicBert, NomicBertConfig, NomicBertForMaskedLM
from nomic_repro.checkpoint import (
    CheckpointError,
    config_to_nomic_dict,
    load_pretrained,
    save_pretrained,
    load_tokenizer,
)

TINY = dict(
    vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80
)


def batch(vocab, lengths=(37, 20, 5, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), S), generator=g)
    am = (torch.arange(S)[None] < torch.tensor(lengths)[:, None]).long()
    return ids, am


def close_on_real(got, want, am, atol=1e-5):
    "Compare at real tokens only: at padding transformers computes unread values, we return zeros."
    m = am.bool()
    return assert_close(got[m], want[m], rtol=0, atol=atol)


def hf_model(cls=transformers.NomicBertModel, rope=None, **kw):
    cfg = transformers.NomicBertConfig(
        **{**TINY, **kw}, rope_parameters=rope or {"rope_type": "default", "rope_theta": 1000.0}
    )
    return cls(cfg).eval()


def test_full_config_parity(tmp_path):
    seed_everything(0)
    hf = transformers.NomicBertModel(
        transformers.NomicBertConfig(rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
    ).eval()
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    assert sum(p.numel() for p in ours.parameters()) == 136_731_648
    ids, am = batch(30528, (48, 31, 7))
    with torch.no_grad():
        close_on_real(ours(ids, am), hf(ids, attention_mask=am).last_hidden_state, am)


def test_mlm_parity_and_head_biases(tmp_path):
    seed_everything(1)
    hf = hf_model(transformers.NomicBertForMaskedLM)
    with torch.no_grad():
        hf.cls.predictions.bias.normal_()
        hf.cls.predictions.transform.dense.bias.normal_()
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path, with_mlm_head=True)
    assert ours.config.mlm_head_bias
    ids, am = batch(200)
    labels = torch.where(
        (torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.3) & am.bool(),
        ids,
        -100,
    )
    with torch.no_grad():
        r, o = hf(ids, attention_mask=am, labels=labels), ours(ids, am, labels=labels)
    close_on_real(o.logits, r.logits, am)
    assert_close(o.loss, r.loss)
    enc = load_pretrained(tmp_path)  # without the head: the encoder alone, head keys dropped
    with torch.no_grad():
        close_on_real(enc(ids, am), hf.nomic_bert(ids, attention_mask=am).last_hidden_state, am)


def test_dynamic_ntk_beyond_trained_length(tmp_path):
    seed_everything(2)
    hf = hf_model(
        rope={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0},
        num_hidden_layers=1,
        max_position_embeddings=256,
    )
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    assert ours.config.rotary_scaling_factor == 2.0 and ours.config.max_trained_positions == 256
    for lengths in ((600, 300, 9), (256, 100), (1000,)):  # beyond, at, and far beyond L0 = 256
        ids, am = batch(200, lengths)
        fresh = hf_model(
            rope={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0},
            num_hidden_layers=1,
            max_position_embeddings=256,
        )
        fresh.load_state_dict(
            hf.state_dict()
        )  # transformers' rotary is stateful: a fresh module per batch
        with torch.no_grad():
            close_on_real(
                ours(ids, am), fresh(ids, attention_mask=am).last_hidden_state, am, atol=1e-4
            )
    # the flag can also be switched on at load time, as users do with the published v1.5 config (rotary_scaling_factor null)
    save_pretrained(
        load_pretrained(tmp_path, rotary_scaling_factor=None), tmp_path / "plain", layout="nomic"
    )
    assert (
        load_pretrained(tmp_path / "plain", rotary_scaling_factor=2).config.rotary_scaling_factor
        == 2
    )


def nomic_key_table(n_layer=2, d=64, inner=80, vocab=200):
    "The original Nomic layout's tensor names and shapes (nomic-embed-text-v1), written out."
    keys = {
        "embeddings.word_embeddings.weight": [vocab, d],
        "embeddings.token_type_embeddings.weight": [2, d],
        "emb_ln.weight": [d],
        "emb_ln.bias": [d],
    }
    for i in range(n_layer):
        p = f"encoder.layers.{i}."
        keys.update(
            {
                p + "attn.Wqkv.weight": [3 * d, d],
                p + "attn.out_proj.weight": [d, d],
                p + "mlp.fc11.weight": [inner, d],
                p + "mlp.fc12.weight": [inner, d],
                p + "mlp.fc2.weight": [d, inner],
            }
        )
        for n in ("norm1", "norm2"):
            keys.update({p + f"{n}.weight": [d], p + f"{n}.bias": [d]})
    return keys


def test_original_nomic_layout_from_the_key_table(tmp_path):
    g = torch.Generator().manual_seed(4)
    table = nomic_key_table()
    assert len(table) == 4 + 2 * 9
    sd = {
        k: (1 + 0.1 * torch.randn(s, generator=g))
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "emb_ln.weight"
        else 0.05 * torch.randn(s, generator=g)
        for k, s in table.items()
    }
    save_file(sd, str(tmp_path / "model.safetensors"))
    cfg = {
        "n_embd": 64,
        "n_layer": 2,
        "n_head": 4,
        "n_inner": 80,
        "vocab_size": 200,
        "type_vocab_size": 2,
        "layer_norm_epsilon": 1e-12,
        "rotary_emb_base": 1000,
        "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False,
        "rotary_scaling_factor": None,
        "max_trained_positions": 2048,
        "activation_function": "swiglu",
        "qkv_proj_bias": False,
        "mlp_fc1_bias": False,
        "mlp_fc2_bias": False,
        "prenorm": False,
        "model_type": "nomic_bert",
        "architectures": ["NomicBertModel"],
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    ours = load_pretrained(tmp_path)
    # the same tensors converted by hand into transformers' names: an independent implementation must agree
    hf = hf_model()
    hsd = {
        "embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
        "embeddings.token_type_embeddings.weight": sd["embeddings.token_type_embeddings.weight"],
        "embeddings.LayerNorm.weight": sd["emb_ln.weight"],
        "embeddings.LayerNorm.bias": sd["emb_ln.bias"],
    }
    for i in range(2):
        p, o = f"encoder.layers.{i}.", f"layers.{i}."
        q, k, v = sd[p + "attn.Wqkv.weight"].chunk(3)
        hsd.update(
            {
                o + "self_attn.q_proj.weight": q,
                o + "self_attn.k_proj.weight": k,
                o + "self_attn.v_proj.weight": v,
                o + "self_attn.o_proj.weight": sd[p + "attn.out_proj.weight"],
                o + "mlp.up_proj.weight": sd[p + "mlp.fc11.weight"],
                o + "mlp.gate_proj.weight": sd[p + "mlp.fc12.weight"],
                o + "mlp.down_proj.weight": sd[p + "mlp.fc2.weight"],
                o + "post_attention_layernorm.weight": sd[p + "norm1.weight"],
                o + "post_attention_layernorm.bias": sd[p + "norm1.bias"],
                o + "post_mlp_layernorm.weight": sd[p + "norm2.weight"],
                o + "post_mlp_layernorm.bias": sd[p + "norm2.bias"],
            }
        )
    hf.load_state_dict(hsd, strict=True)
    ids, am = batch(200)
    with torch.no_grad():
        close_on_real(ours(ids, am), hf(ids, attention_mask=am).last_hidden_state, am)


@pytest.mark.parametrize("layout", ["nomic", "transformers"])
def test_mlm_round_trip(tmp_path, layout):
    seed_everything(5)
    m = NomicBertForMaskedLM(
        NomicBertConfig(
            vocab_size=200, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=80
        )
    ).eval()
    save_pretrained(m, tmp_path, layout=layout)
    back = load_pretrained(tmp_path, with_mlm_head=True)
    assert back.cls.predictions.decoder.weight is back.bert.embeddings.word_embeddings.weight
    ids, am = batch(200)
    with torch.no_grad():
        assert_close(back(ids, am).logits, m(ids, am).logits, rtol=0, atol=0)
    if layout == "nomic":
        keys = json.loads((tmp_path / "config.json").read_text())
        assert keys["architectures"] == ["NomicBertForPreTraining"]
    else:
        hf = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path)).eval()
        with torch.no_grad():
            close_on_real(hf(input_ids=ids, attention_mask=am).logits, m(ids, am).logits, am)


def test_bin_and_sharded_files(tmp_path):
    seed_everything(6)
    m = NomicBert(
        NomicBertConfig(
            vocab_size=200, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=80
        )
    ).eval()
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    (tmp_path / "bin").mkdir()
    (tmp_path / "shard").mkdir()
    for d in ("bin", "shard"):
        (tmp_path / d / "config.json").write_text(json.dumps(config_to_nomic_dict(m.config)))
    torch.save(sd, tmp_path / "bin" / "pytorch_model.bin")
    keys = sorted(sd)
    half = len(keys) // 2
    save_file(
        {k: sd[k] for k in keys[:half]},
        str(tmp_path / "shard" / "model-00001-of-00002.safetensors"),
    )
    save_file(
        {k: sd[k] for k in keys[half:]},
        str(tmp_path / "shard" / "model-00002-of-00002.safetensors"),
    )
    wm = {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, k in enumerate(keys)}
    (tmp_path / "shard" / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": wm})
    )
    ids, am = batch(200)
    with torch.no_grad():
        want = m(ids, am)
        for d in ("bin", "shard"):
            assert_close(load_pretrained(tmp_path / d)(ids, am), want, rtol=0, atol=0)


def test_bin_is_never_unpickled_blindly(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "config.json").write_text(
        json.dumps(
            config_to_nomic_dict(
                NomicBertConfig(vocab_size=200, hidden_size=64, num_layers=1, num_heads=4)
            )
        )
    )
    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="could not read weights"):
        load_pretrained(tmp_path)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "missing" / "deeper")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(CheckpointError, match="neither Nomic's"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(
        json.dumps(
            config_to_nomic_dict(
                NomicBertConfig(vocab_size=200, hidden_size=64, num_layers=1, num_heads=4)
            )
        )
    )
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_pretrained(tmp_path / "empty")
    moe = {**config_to_nomic_dict(NomicBertConfig()), "num_experts": 8, "moe_every_n_layers": 2}
    (tmp_path / "empty" / "config.json").write_text(json.dumps(moe))
    with pytest.raises(CheckpointError, match="mixture-of-experts"):
        load_pretrained(tmp_path / "empty")


def test_missing_keys_are_all_listed(tmp_path):
    m = NomicBert(
        NomicBertConfig(
            vocab_size=200, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=80
        )
    )
    save_pretrained(m, tmp_path)
    sd = {k: v for k, v in m.state_dict().items() if "layers.1." not in k}
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"9 missing: \['encoder.layers.1.attn.Wqkv.weight'"):
        load_pretrained(tmp_path)


def test_tokenizer_matches_the_published_bert_uncased_ids():
    tok = load_tokenizer()
    ids = tok("Hello, World! Nomic Embed's tokenizer lower-cases.")["input_ids"]
    # ids from bert-base-uncased's vocabulary (hello 7592, world 2088, ! 999, , 1010)
    assert ids[:5] == [101, 7592, 1010, 2088, 999] and ids[-1] == 102


def test_xlm_roberta_shape_and_bias_mismatches_are_named():
    "Moved from notebook 06: each config that does not fit a tiny XLM-R is refused naming the tensor."
    from nomic_repro.checkpoint import from_xlm_roberta

    seed_everything(0)
    xcfg = transformers.XLMRobertaConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=66,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
    )
    xs = transformers.XLMRobertaForMaskedLM(xcfg).state_dict()
    small = NomicBertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=128,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        activation="gelu",
        qkv_bias=True,
        mlp_fc1_bias=True,
        mlp_fc2_bias=True,
        mlm_head_bias=True,
        pad_token_id=1,
    )
    assert set(from_xlm_roberta(xs, small)) >= {"bert.encoder.layers.1.attn.Wqkv.bias"}
    cases = [
        (
            dict(intermediate_size=96),
            "mlp.fc1.weight: XLM-RoBERTa has (128, 64), this config needs (96, 64)",
        ),
        (dict(mlp_fc2_bias=False), "mlp.fc2.bias comes from XLM-RoBERTa"),
        (dict(type_vocab_size=0), "token_type_embeddings.weight comes from XLM-RoBERTa"),
        (dict(vocab_size=1024), "pass pad_vocab=True"),
    ]
    for kw, msg in cases:
        with pytest.raises(CheckpointError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            from_xlm_roberta(xs, replace(small, **kw))
