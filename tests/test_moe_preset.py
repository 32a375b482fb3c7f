"""The `moe` preset (Nomic Embed v2) through its three stage functions at test size, by overrides only: stage 1 trains
the dense v2 backbone, starting from a tiny XLM-R checkpoint (`init`, as the paper starts from XLM-R-base), with the
preset's (non-BERT) tokenizer and saves it with the model; stage 2 upcycles it to 8
experts on the odd layers, adds the router's aux loss and resumes into the upcycled model; stage 3 turns the aux
loss off. A small XLM-R-style tokenizer (<s> 0, <pad> 1, </s> 2, <mask> last) stands in for XLM-R's, which is not
available offline; with ids far below BERT's, any stage that fell back to bert-base-uncased would fail."""

import json
from collections import Counter
import torch
import nomic_repro  # noqa: F401  (before transformers: the Triton interpreter switch)
import transformers
from nomic_repro.checkpoint import load_pretrained, load_tokenizer, read_config
from nomic_repro.data import read_records
from nomic_repro.model_moe import NomicBertMoE
from nomic_repro.stage1 import run_mlm
from nomic_repro.stage2 import run_contrastive
from nomic_repro.stage3 import run_finetune
from nomic_repro.eval import load_encoder  # loads the miner

MLM = [
    "model.num_heads=2",
    "model.hidden_size=64",
    "model.num_layers=2",
    "model.intermediate_size=96",
    "model.max_trained_positions=64",
    'data.sources=["mlm/wikipedia.jsonl.gz"]',
    "data.seq_len=64",
    "data.limit_docs=200",
    "train.max_steps=3",
    "train.batch_size=8",
    "train.grad_accum=1",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.save_every=3",
]
S2 = [
    "train.max_steps=4",
    "train.batch_size=8",
    "train.warmup_steps=1",
    "train.save_every=2",
    "train.log_every=1",
    "grad_cache_chunk=4",
    "data.limit_per_source=24",
    "data.filter_model=null",
    "data.doc_max_length=48",
    "eval_tasks=[]",
]
S3 = [
    "train.max_steps=2",
    "train.batch_size=4",
    "train.warmup_steps=1",
    "train.log_every=1",
    "data.limit=30",
    "data.query_max_length=32",
    "data.doc_max_length=32",
    "eval_tasks=[]",
    "data.miner=minilm",  # the preset mines with multilingual-e5-small, which is not available offline
    "matryoshka_dims=[64, 16]",
]  # v2: 768 and 256 of a 768-wide model; this one is 64 wide


def xlmr_style_tokenizer(folder):
    "A Unigram tokenizer over the vendored text's 1,500 commonest words and its characters, with XLM-R's special ids."
    texts = [t for (t,) in read_records("mlm/wikipedia.jsonl.gz", ("text",), limit=300)[0]]
    words = [w for w, _ in Counter(w for t in texts for w in t.split()).most_common(1500)]
    pieces = list(
        dict.fromkeys(
            ["▁" + w for w in words] + sorted({c for t in texts for c in t} - {" "}) + ["▁"]
        )
    )
    tok = transformers.XLMRobertaTokenizerFast(
        vocab=[("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        + [(p, -1.0 - i / 1000) for i, p in enumerate(pieces)]
        + [("<mask>", 0.0)]
    )
    tok.save_pretrained(str(folder))
    return tok


def log(d):
    return [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]


def test_moe_preset_three_stages(tmp_path):
    tok = xlmr_style_tokenizer(tmp_path / "tok")
    vocab = -(-len(tok) // 64) * 64  # padded to a multiple of 64, as v2's 250,048
    s1, s2, s3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    xlmr = transformers.XLMRobertaForMaskedLM(
        transformers.XLMRobertaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=96,
            max_position_embeddings=66,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
        )
    )
    xlmr.save_pretrained(str(tmp_path / "xlmr"))
    run_mlm(
        "moe",
        s1,
        overrides=MLM
        + [
            f"model.vocab_size={vocab}",
            f"tokenizer={tmp_path / 'tok'}",
            f"init={tmp_path / 'xlmr'}",
        ],
        progress=False,
    )
    m1 = load_pretrained(s1 / "model")  # 3 AdamW steps (lr <= 4e-4) away from XLM-R's weights
    x = xlmr.state_dict()
    close = lambda a, b: (a.detach() - b).abs().max().item() < 5e-3
    assert close(
        m1.embeddings.word_embeddings.weight[: len(tok)],
        x["roberta.embeddings.word_embeddings.weight"],
    )
    assert close(
        m1.encoder.layers[0].attn.Wqkv.weight[:64],
        x["roberta.encoder.layer.0.attention.self.query.weight"],
    )
    assert close(m1.encoder.layers[1].mlp.fc2.bias, x["roberta.encoder.layer.1.output.dense.bias"])
    assert not close(
        m1.encoder.layers[0].attn.Wqkv.weight[:64],
        x["roberta.encoder.layer.0.attention.self.key.weight"],
    )  # not vacuous
    cfg = read_config(s1 / "model")
    assert (
        cfg["activation_function"],
        cfg["qkv_proj_bias"],
        cfg["rotary_emb_base"],
        cfg["layer_norm_epsilon"],
    ) == ("gelu", True, 10000.0, 1e-5)
    assert (
        "num_experts" not in cfg and load_tokenizer(s1 / "model").pad_token_id == 1
    )  # dense, with the preset's tokenizer

    # stage 2: upcycled to 8 experts (top-2, odd layers), aux loss on; an interrupted run resumes into the upcycled model
    run_contrastive("moe", s1 / "model", s2, overrides=S2, max_steps=2, progress=False)
    r = run_contrastive("moe", s1 / "model", s2, overrides=S2, progress=False)
    run_contrastive("moe", s1 / "model", tmp_path / "s2-whole", overrides=S2, progress=False)
    assert (r["start_step"], r["end_step"]) == (2, 4)
    assert [x["loss"] for x in log(s2)] == [
        x["loss"] for x in log(tmp_path / "s2-whole")
    ]  # bit-exact resume
    assert all(x["aux_loss"] > 0.5 and x["expert_load_max_over_mean"] >= 1.0 for x in log(s2)), log(
        s2
    )
    m = load_pretrained(s2 / "model")
    assert isinstance(m, NomicBertMoE) and (
        m.config.num_experts,
        m.config.moe_top_k,
        m.config.moe_every_n_layers,
    ) == (8, 2, 2)
    assert [m.config.is_moe_layer(i) for i in range(2)] == [False, True]
    assert m.encoder.layers[1].mlp.experts.mlp.w1.shape == (8 * 96, 64)
    assert load_tokenizer(s2 / "model").mask_token_id == len(tok) - 1

    # stage 3: the same MoE model, aux loss off
    run_finetune("moe", s2 / "model", s3, overrides=S3, progress=False, load_encoder=load_encoder)
    assert all(x["aux_loss"] == 0.0 for x in log(s3)) and len(log(s3)) == 2, log(s3)
    m3 = load_pretrained(s3 / "model")
    assert isinstance(m3, NomicBertMoE) and load_tokenizer(s3 / "model").pad_token_id == 1
    assert not torch.equal(
        m3.encoder.layers[1].mlp.router.layer.weight, m.encoder.layers[1].mlp.router.layer.weight
    )
