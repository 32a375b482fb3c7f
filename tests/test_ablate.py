"""`nomic-repro ablate` end to end at a few steps (#29): one study, one seed, its variants sharing
stage 1, one CSV row per variant, and a rerun from scratch in a fresh folder that writes the same CSV
byte for byte (a rerun in the same folder reuses everything: `21_ablations`)."""

import csv
import nomic_repro  # noqa: F401  (first: Triton's CPU interpreter before triton is imported)
from _cli import cli

FEW = [
    "mlm.train.max_steps=3", "mlm.train.batch_size=8", "mlm.data.limit_docs=64",
    "contrastive.train.max_steps=3", "contrastive.train.batch_size=8",
    "contrastive.data.limit_per_source=48", "contrastive.data.filter_model=null",
    "finetune.train.max_steps=3", "finetune.train.batch_size=8", "finetune.data.limit=40",
    "finetune.data.mine_max_length=32",
]  # fmt: skip


def _ablate(tmp_path, lab: str):
    argv = ["ablate", "--study", "temperature", "--seeds", "1", "--task", "stsb"]
    argv += ["--output-dir", tmp_path / lab, "--results-dir", tmp_path / lab / "res"]
    return cli(*argv, *[x for s in FEW for x in ("--set", s)])


def test_a_study_end_to_end(tmp_path):
    rc, out, err = _ablate(tmp_path, "lab")
    assert rc == 0, err
    assert out.startswith("temperature: 3 runs in ") and "stsb:cosine_spearman: 0.01 " in out
    assert out.rstrip().endswith("one seed")  # one seed: no noise floor, no verdict
    with open(tmp_path / "lab" / "res" / "temperature.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["0.01", "0.02", "0.05"]
    assert len({r["stsb:cosine_spearman"] for r in rows}) == 3  # three models
    stages = sorted(p.name.split("-")[0] for p in (tmp_path / "lab" / "stages").iterdir())
    assert stages == ["contrastive"] * 3 + ["finetune"] * 3 + ["mlm"]  # one stage 1, shared
    rc, _, err = _ablate(tmp_path, "again")  # trained again from scratch: the same CSV
    assert rc == 0, err
    csvs = [(tmp_path / lab / "res" / "temperature.csv").read_bytes() for lab in ("lab", "again")]
    assert csvs[0] == csvs[1], csvs


def test_mistakes_are_one_line(tmp_path):
    for extra, says in [
        (["--study", "nope"], "unknown study 'nope'; choose one of"),
        (["--study", "mlm", "--seeds", "0"], "--seeds must be >= 1"),
        (["--study", "mlm", "--set", "mlm.train.nope=1"], "unknown setting 'mlm.train.nope'"),
        (["--study", "mlm", "moe", "--task", "qmsum@x"], "write TASK, TASK@TOKENS or TASK@DIMSd"),
        (["--study", "moe", "nope"], "unknown study 'nope'"),
    ]:
        rc, _, err = cli("ablate", "--output-dir", tmp_path, *extra)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and says in err, (extra, err)
