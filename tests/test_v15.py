"""nomic-embed-text-v1.5 end to end: the LayerNorm-before-truncation flag is saved with a model, read back by
`Embedder.from_pretrained` and the evaluation, written by the training stages, and built into the
sentence-transformers modules so that `SentenceTransformer(dir, truncate_dim=d)` gives our vectors at every
Matryoshka width of a 768-wide model (contrastors `src/contrastors/configs/train/contrastive_matryoshka.yaml`)."""

import copy, gzip, json
from dataclasses import replace
import numpy as np
import pytest, torch
import torch.nn.functional as F
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.model import NomicBert, NomicBertConfig
from nomic_repro.checkpoint import save_pretrained, saved_layer_norm, read_config, CheckpointError
from nomic_repro.embed import Embedder, MATRYOSHKA_DIMS

TINY = NomicBertConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=96)
QUERIES = [
    "what is a rotary embedding?",
    "how long can a Nomic Embed input be?",
    "hello",
    "x " * 60,
]


def trained_like(cfg: NomicBertConfig, seed: int = 0) -> NomicBert:
    """A random model whose last LayerNorm has moved off weight 1 / bias 0, as training moves it: at init every
    token vector has mean 0, so v1.5's LayerNorm on the pooled vector is a pure rescale and would prove nothing."""
    seed_everything(seed)
    m = NomicBert(cfg).eval()
    with torch.no_grad():
        last = m.encoder.layers[-1].norm2
        last.weight.normal_(1.0, 0.5)
        last.bias.normal_(0.0, 0.5)
    return m


@pytest.mark.parametrize("layout", ["nomic", "transformers"])
@pytest.mark.parametrize("flag", [True, False])
def test_flag_round_trip_whatever_the_folder_name(tmp_path, layout, flag):
    d = save_pretrained(NomicBert(TINY), tmp_path / "my-run", layout=layout, layer_norm=flag)
    assert read_config(d)["nomic_repro"] == {"layer_norm": flag}
    assert saved_layer_norm(d) is flag
    assert Embedder.from_pretrained(d).layer_norm is flag
    # the saved flag beats the published-name rule, and the argument beats the flag
    named = save_pretrained(
        NomicBert(TINY), tmp_path / "nomic-embed-text-v1.5", layout=layout, layer_norm=flag
    )
    assert Embedder.from_pretrained(named).layer_norm is flag
    assert Embedder.from_pretrained(d, layer_norm=not flag).layer_norm is (not flag)


def test_a_folder_that_does_not_say_falls_back_to_the_published_names(tmp_path):
    for name, want in [
        ("nomic-embed-text-v1.5", True),
        ("nomic-embed-text-v1", False),
        ("my-run", False),
    ]:
        d = save_pretrained(NomicBert(TINY), tmp_path / name)
        assert saved_layer_norm(d) is None and "nomic_repro" not in read_config(d)
        assert Embedder.from_pretrained(d).layer_norm is want, name


def test_embedder_save_pretrained_keeps_its_flag_and_vectors(tmp_path):
    e = Embedder(trained_like(TINY), layer_norm=True)
    back = Embedder.from_pretrained(
        e.save_pretrained(tmp_path / "served"), rotary_scaling_factor=None
    )
    assert back.layer_norm is True
    for dim in (64, 16):
        got, want = back.encode(QUERIES, dim=dim), e.encode(QUERIES, dim=dim)
        assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=0, atol=0)


def test_bad_flags_are_refused(tmp_path):
    with pytest.raises(TypeError, match="layer_norm must be True, False or None"):
        save_pretrained(NomicBert(TINY), tmp_path / "x", layer_norm=1)
    d = save_pretrained(NomicBert(TINY), tmp_path / "y", layer_norm=True)
    (d / "config.json").write_text(
        json.dumps({**read_config(d), "nomic_repro": {"layer_norm": "yes"}})
    )
    with pytest.raises(CheckpointError, match="nomic_repro.layer_norm must be true or false"):
        saved_layer_norm(d)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    "A 768-wide one-layer model saved in the transformers layout with v1.5's LayerNorm, and our Embedder of it."
    cfg = NomicBertConfig(hidden_size=768, num_layers=1, num_heads=12, intermediate_size=64)
    d = tmp_path_factory.mktemp("v15") / "wide-matryoshka"
    Embedder(trained_like(cfg, seed=1), layer_norm=True).save_pretrained(d, layout="transformers")
    return d, Embedder.from_pretrained(d, rotary_scaling_factor=None)


def test_sentence_transformers_modules(wide):
    from sentence_transformers import SentenceTransformer

    d, _ = wide
    st = SentenceTransformer(str(d), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "LayerNorm", "Normalize"]
    ln = st[2].norm
    assert (
        ln.eps == 1e-5
        and torch.equal(ln.weight, torch.ones(768))
        and torch.equal(ln.bias, torch.zeros(768))
    )


@pytest.mark.parametrize("dim", MATRYOSHKA_DIMS)
def test_sentence_transformers_equals_embedder_at_every_matryoshka_dim(wide, dim):
    from sentence_transformers import SentenceTransformer

    d, ours = wide
    assert ours.layer_norm is True
    mine = ours.encode(QUERIES, task="search_query", dim=dim)
    st = SentenceTransformer(str(d), device="cpu", truncate_dim=dim)
    theirs = st.encode(QUERIES, prompt_name="query", normalize_embeddings=True)
    assert theirs.shape == mine.shape == (len(QUERIES), dim)
    assert_close(torch.from_numpy(theirs), torch.from_numpy(mine), rtol=0, atol=1e-6)
    # without normalize_embeddings sentence-transformers cuts after its Normalize: same directions, shorter
    raw = torch.from_numpy(st.encode(QUERIES, prompt_name="query"))
    assert_close(F.normalize(raw, dim=-1), torch.from_numpy(mine), rtol=0, atol=1e-6)
    if dim < 768:
        assert raw.norm(dim=-1).max() < 1
    # and the LayerNorm matters here: without it the cut vectors are others
    plain = Embedder(ours.model, ours.tokenizer, layer_norm=False)
    plain = plain.encode(QUERIES, task="search_query", dim=dim)
    assert np.abs(plain - mine).max() > 100 * 1e-6


def test_v15_presets_follow_contrastive_matryoshka_yaml():
    from nomic_repro.stage3 import STAGE3_PRESETS
    from nomic_repro.pipeline import PIPELINE_PRESETS, get_pipeline_preset

    v15, base = STAGE3_PRESETS["v1.5"], STAGE3_PRESETS["base"]
    # matryoshka_dims [64, 128, 256, 512, 768] with weights all 1, hamming: true, grad_cache: false
    assert sorted(v15.matryoshka_dims) == [64, 128, 256, 512, 768]
    assert (v15.layer_norm, v15.grad_cache_chunk) == (True, None)
    # lr 2e-5, warmup 400, linear, batch 256, 7 negatives, seq_len 512, logit_scale 50: base's
    t = v15.train
    assert (
        t.lr,
        t.warmup_steps,
        t.schedule,
        t.batch_size,
        t.betas,
        t.weight_decay,
        t.grad_clip,
    ) == (2e-5, 400, "linear", 256, (0.9, 0.999), 0.01, 1.0)
    assert (
        v15.data.n_negatives,
        v15.data.query_max_length,
        v15.data.doc_max_length,
        v15.temperature,
    ) == (7, 512, 512, 0.02)
    # base leaves both to the init model (stage 2's, which trains neither)
    assert replace(v15, name="base", matryoshka_dims=None, layer_norm=None) == base
    p = get_pipeline_preset("v1.5")
    b = PIPELINE_PRESETS["base"]
    assert p.finetune == v15 and (p.mlm, p.contrastive) == (b.mlm, b.contrastive)


@pytest.mark.parametrize(
    "argv, msg",
    [
        (
            ["finetune", "--preset", "v1.5", "--init", "{init}", "--output-dir", "{tmp}/ft"],
            "matryoshka_dims [768, 512, 256, 128] do not fit the encoder's 64 features",
        ),
        (
            ["run", "--preset", "v1.5", "--output-dir", "{tmp}/run", "--set", "stage3.bogus=1"],
            "unknown setting 'finetune.bogus'",
        ),
    ],
)
def test_cli_accepts_the_v15_preset_name(tmp_path, argv, msg):
    "The name resolves (the error is the next check's, not 'unknown preset'), in one line with exit code 2."
    import contextlib, io
    from nomic_repro.cli import main

    init = save_pretrained(NomicBert(TINY), tmp_path / "init")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main([a.format(init=init, tmp=tmp_path) for a in argv])
    assert rc == 2 and msg in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1, (
        err.getvalue()
    )


def _mined(path, n=48):
    "A mined-triplet cache of the first `n` MedQuAD pairs with random negatives (no miner: keeps the test fast)."
    from nomic_repro.data import read_records

    rows, _ = read_records("supervised/medquad.jsonl.gz", ("query", "document"), limit=n)
    docs = [d for _, d in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, (q, d) in enumerate(rows):
            negs = [docs[(i + k) % n] for k in range(1, 4)]
            f.write(json.dumps({"query": q, "document": d, "negatives": negs}) + "\n")


@pytest.mark.parametrize("layer_norm", [True, False])
def test_stage3_saves_the_flag_and_the_evaluation_uses_it(tmp_path, layer_norm):
    from nomic_repro.stage3 import STAGE3_PRESETS, DEMO_SUPERVISED_SOURCES, run_finetune
    from nomic_repro.eval import load_encoder

    save_pretrained(NomicBert(TINY), tmp_path / "init")
    t3 = STAGE3_PRESETS["tiny"]
    one = replace(t3, data=replace(t3.data, sources=DEMO_SUPERVISED_SOURCES[:1]))
    _mined(tmp_path / "s3" / "mined-medquad.jsonl.gz")
    sets = [
        "train.max_steps=2",
        "train.batch_size=8",
        "data.doc_max_length=64",
        "eval_tasks=[]",
        "matryoshka_dims=[64, 32, 16]",
        f"layer_norm={json.dumps(layer_norm)}",
    ]
    r = run_finetune(one, tmp_path / "init", tmp_path / "s3", overrides=sets, progress=False)
    model = tmp_path / "s3" / "model"
    assert r["end_step"] == 2 and saved_layer_norm(model) is layer_norm
    assert load_encoder(model).embedder.layer_norm is layer_norm
    # the trained folder itself loads in sentence-transformers and gives our vectors at every dim
    from sentence_transformers import SentenceTransformer

    ours = Embedder.from_pretrained(model, rotary_scaling_factor=None)
    for dim in (64, 32, 16):
        st = SentenceTransformer(str(model), device="cpu", truncate_dim=dim)
        theirs = st.encode(QUERIES, prompt_name="query", normalize_embeddings=True)
        assert_close(
            torch.from_numpy(theirs),
            torch.from_numpy(ours.encode(QUERIES, task="search_query", dim=dim)),
            rtol=0,
            atol=1e-6,
        )


def test_stage2_saves_the_flag(tmp_path):
    from nomic_repro.stage2 import run_contrastive

    save_pretrained(NomicBert(TINY), tmp_path / "init")
    sets = [
        "train.max_steps=1",
        "train.batch_size=8",
        "data.limit_per_source=16",
        "data.filter_model=null",
        "data.doc_max_length=48",
        "eval_tasks=[]",
        "layer_norm=true",
    ]
    run_contrastive("tiny", tmp_path / "init", tmp_path / "s2", overrides=sets, progress=False)
    assert saved_layer_norm(tmp_path / "s2" / "model") is True
