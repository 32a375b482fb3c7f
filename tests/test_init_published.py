"""#28: `nomic-repro finetune --init X` from a published checkpoint. A tiny random NomicBERT is saved in each layout
the loader reads (Nomic's remote-code layout named like nomic-embed-text-v1 and -v1.5, transformers' layout with
sentence-transformers modules and a LayerNorm module, our own flagged save); the real CLI fine-tunes each for one
step, and the run records v1.5's LayerNorm and the Matryoshka dims the init model was trained with (v1.5's:
contrastors `src/contrastors/configs/train/contrastive_matryoshka.yaml`, matryoshka_dims [64, 128, 256, 512, 768]),
saves them with the model, and the model loads in sentence-transformers and in `nomic-repro embed`."""

import gzip, json, subprocess, sys
import numpy as np
import pytest
from _cli import cli as run_main
from nomic_repro.checkpoint import (
    read_config,
    save_pretrained,
    saved_layer_norm,
    saved_matryoshka_dims,
)
from nomic_repro.core import seed_everything
from nomic_repro.data import read_records
from nomic_repro.model import NomicBert, NomicBertConfig
from nomic_repro.stage3 import DEMO_SUPERVISED_SOURCES
from _launch import launch_env

# 128 wide, so v1.5's widths up to the model's are two: (128, 64)
CFG = NomicBertConfig(hidden_size=128, num_layers=1, num_heads=2, intermediate_size=128)
# nomic-embed-text-v1's modules.json: Transformer -> Pooling -> Normalize (no LayerNorm module)
PUBLISHED_MODULES = [
    {"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{t}"}
    for i, (p, t) in enumerate(
        [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    )
]
FAST = ["train.batch_size=4", "data.query_max_length=32", "data.doc_max_length=32", "eval_tasks=[]"]


def published_nomic(folder):
    "Nomic's remote-code layout with the published sentence-transformers files, and no flag of ours."
    save_pretrained(NomicBert(CFG), folder, layout="nomic")
    (folder / "modules.json").write_text(json.dumps(PUBLISHED_MODULES))
    return folder


def st_with_layer_norm(folder):
    "transformers' layout with a 2_LayerNorm module, our config key removed: only the module says it."
    save_pretrained(NomicBert(CFG), folder, layout="transformers", layer_norm=True)
    cfg = read_config(folder)
    del cfg["nomic_repro"]
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def inits(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    seed_everything(0)
    d = {
        "v1": published_nomic(root / "nomic-embed-text-v1"),
        "v1.5": published_nomic(root / "nomic-embed-text-v1.5"),
        "st": st_with_layer_norm(root / "st-layernorm"),
        "ours": save_pretrained(
            NomicBert(CFG), root / "my-run", layer_norm=True, matryoshka_dims=(128, 32)
        ),
    }
    assert all(saved_layer_norm(f) is None for k, f in d.items() if k != "ours")
    assert (root / "st-layernorm" / "2_LayerNorm").is_dir()
    return d


def mined(out, n=16):
    "Each source's mined-negative cache, written ahead so the run mines nothing (fast, no miner model)."
    out.mkdir(parents=True)
    for src in DEMO_SUPERVISED_SOURCES:
        rows, _ = read_records(src.path, ("query", "document"), limit=n)
        docs = [doc for _, doc in rows]
        with gzip.open(out / f"mined-{src.name}.jsonl.gz", "wt") as f:
            for i, (q, doc) in enumerate(rows):
                negs = [docs[(i + k) % n] for k in range(1, 4)]
                f.write(json.dumps({"query": q, "document": doc, "negatives": negs}) + "\n")


@pytest.mark.parametrize(
    "init, sets, want",
    [
        ("v1", [], (False, None)),  # the published names: v1 has neither
        ("v1.5", [], (True, [128, 64])),  # v1.5 both, its dims up to the model's width
        ("st", [], (True, None)),  # a sentence-transformers LayerNorm module
        ("ours", [], (True, [128, 32])),  # what our save recorded
        ("v1.5", ["layer_norm=false", "matryoshka_dims=[]"], (False, None)),  # a setting wins
    ],
)
def test_finetune_follows_the_init_model(inits, tmp_path, init, sets, want):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "ft"
    mined(out)
    argv = ["finetune", "--init", inits[init], "--output-dir", out, "--preset", "tiny"]
    argv += [a for s in FAST + sets for a in ("--set", s)]
    rc, stdout, err = run_main(*argv, "--max-steps", "1")
    assert rc == 0, err
    assert json.loads(stdout)["end_step"] == 1
    preset = json.loads((out / "preset.json").read_text())
    assert (preset["layer_norm"], preset["matryoshka_dims"]) == want
    model = out / "model"
    ln, dims = want
    assert saved_layer_norm(model) is ln and saved_matryoshka_dims(model) == tuple(dims or ())
    st = SentenceTransformer(str(model), device="cpu")
    assert ("LayerNorm" in [type(m).__name__ for m in st]) is ln
    assert st.encode(["a query"]).shape == (1, 128)
    rc, _, err = run_main(
        "embed", "--model", model, "--text", "a", "b", "--output", tmp_path / "e.npy"
    )
    assert rc == 0, err
    assert np.load(tmp_path / "e.npy").shape == (2, 128)
    # the folder resumes: the same command resolves the same settings
    rc, stdout, err = run_main(*argv, "--max-steps", "2")
    assert rc == 0 and json.loads(stdout)["start_step"] == 1, err


def test_a_missing_init_folder_is_one_line(tmp_path):
    rc, _, err = run_main("finetune", "--init", tmp_path / "nope", "--output-dir", tmp_path / "ft")
    assert rc == 2 and err.strip().splitlines() == [
        f"nomic-repro finetune: error: --init '{tmp_path / 'nope'}' is not a checkpoint folder"
        " nor a hub id"
    ]
    assert not (tmp_path / "ft").exists()


def test_a_hub_id_that_cannot_be_fetched_is_one_line(tmp_path):
    "Offline (HF_HUB_OFFLINE=1, an empty cache): one line, exit 2, before any run folder is made."
    code = "import sys; from nomic_repro.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [
        "contrastive",
        "--init",
        "nomic-ai/nomic-embed-text-v1.5",
        "--output-dir",
        tmp_path / "s2",
    ]
    env = launch_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(
        "nomic-repro contrastive: error: --init 'nomic-ai/nomic-embed-text-v1.5' is not a local folder"
        " and could not be fetched from the Hugging Face hub"
    )
    assert not (tmp_path / "s2").exists()
