"""The paper-shaped mini tier (.test/paper/): the paper tier's rules and commands for CCA on LlamaGen
and on VAR, end to end in one DAG, on TEST STAND-IN files written by `mini-paper-fixtures` and
`var-mini-fixtures` (random-weight official-layout GPT, VQ-16, VAR and VQVAE files, an
ImageNet-layout folder, an ADM reference batch with stored statistics, an Inception stand-in).
Also: the real paper configs plan their whole chains for every size."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import PYTHON, ROOT, run_snakemake

pytestmark = [pytest.mark.dag]

PAPER = "results/cca_llamagen/paper"
VAR_PAPER = "results/cca_var/paper"
VAR_POINTS = ["16-pretrained", "16-cfg-cfg1.5", "16-cca-b0.02-l50"]
POINTS = ["B-pretrained", "B-cfg-cfg2", "B-cca-b0.02-l1000", "B-ccacfg-b0.1-l1-cfg2"]
CHAIN_RULES = ["cca_llamagen_check_official", "cca_llamagen_paper_codes_shard", "cca_llamagen_paper_codes",
               "cca_llamagen_paper_finetune", "cca_llamagen_paper_sample_shard", "paper_merge_shards",
               "paper_evaluate", "paper_table", "report_claims", "cca_var_check_official",
               "cca_var_paper_finetune", "cca_var_paper_sample_shard"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mini-paper")
    shutil.copytree(ROOT / ".test" / "paper" / "config", workdir / "config")
    for command in ("mini-paper-fixtures", "var-mini-fixtures"):
        subprocess.run([PYTHON, "-m", "guidance_repro", command, "--out", str(workdir / "fixtures")],
                       check=True, capture_output=True)
    start = time.time()
    proc = run_snakemake(workdir, "--cores", "2")
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    print(f"mini paper DAG: {seconds:.0f} s")
    return workdir, proc


@pytest.mark.slow
def test_every_rule_of_the_paper_chain_ran(mini):
    workdir, proc = mini
    for rule in CHAIN_RULES:
        assert f"rule {rule}:" in proc.stdout + proc.stderr, rule
    for paper in (PAPER, VAR_PAPER):
        for name in ("table.csv", "table.md", "figures/fig1.png", "claims.csv", "official_checkpoints.json"):
            assert (workdir / paper / name).stat().st_size > 0, name


@pytest.mark.slow
def test_codes_are_merged_with_a_manifest_naming_the_vq_file(mini):
    workdir, _ = mini
    fixtures = json.loads((workdir / "fixtures" / "TEST-STANDIN-fixtures.json").read_text())
    m = json.loads((workdir / PAPER / "codes" / "manifest.json").read_text())
    n = fixtures["imagenet"]["classes"] * fixtures["imagenet"]["images_per_class"]
    assert m["count"] == n and m["skipped"] == [] and len(m["shards"]) == 2
    assert m["codes"]["shape"] == [n, 10, 16]  # ten crop/flip views of 4 x 4 tokens (64 px / 16)
    assert m["vq_sha256"] == _sha256(workdir / "fixtures" / "llamagen" / "vq_ds16_c2i.TEST-STANDIN.pt")
    labels = np.load(workdir / PAPER / "codes" / "labels.npy")
    assert sorted(set(labels.tolist())) == list(range(fixtures["imagenet"]["classes"]))


@pytest.mark.slow
def test_cca_fine_tune_changed_the_weights_with_the_official_recipe(mini):
    workdir, _ = mini
    pretrained = workdir / "fixtures" / "llamagen" / "c2i_B_384.TEST-STANDIN.pt"
    before = torch.load(pretrained, map_location="cpu", weights_only=True)["model"]
    for ft in ("B-cca-b0.02-l1000", "B-cca-b0.1-l1"):
        official = workdir / PAPER / "models" / f"{ft}.official.pt"
        after = torch.load(official, map_location="cpu", weights_only=True)["model"]
        assert after.keys() == before.keys()
        moved = [k for k in before if not torch.equal(before[k], after[k])]
        assert len(moved) > len(before) // 2, moved
        recipe = json.loads(official.with_name(official.name + ".json").read_text())
        assert recipe["world_size"] == 2 and recipe["accumulation_reduce"] == "sum"
        assert recipe["global_batch"] == 8 and recipe["steps"] == 3 and recipe["parallel"] == "ddp"
        assert recipe["negatives"].endswith("micro-batch of 2")
    b1 = json.loads((workdir / PAPER / "models" / "B-cca-b0.02-l1000.official.pt.json").read_text())
    assert (b1["beta"], b1["lam"]) == (0.02, 1000.0)


@pytest.mark.slow
def test_every_point_is_one_adm_batch_and_cca_samples_differ(mini):
    workdir, _ = mini
    images = {}
    for point in POINTS:
        with np.load(workdir / PAPER / "samples" / f"{point}.npz") as z:
            assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (16, 64, 64, 3)
            assert z["arr_1"].shape == (16,)
            images[point] = z["arr_0"]
        manifest = json.loads((workdir / PAPER / "samples" / f"{point}.json").read_text())
        assert manifest["kind"] == "adm-batch" and manifest["count"] == 16
    assert not np.array_equal(images["B-pretrained"], images["B-cca-b0.02-l1000"])
    assert not np.array_equal(images["B-pretrained"], images["B-cfg-cfg2"])


@pytest.mark.slow
def test_table_has_every_row_and_says_test_standin(mini):
    workdir, _ = mini
    rows = list(csv.DictReader((workdir / PAPER / "table.csv").open()))
    assert [(r["model"], r["method"]) for r in rows] == [("B", m) for m in ("pretrained", "cca", "cfg", "cca_cfg")]
    assert all(r["verdict"] == "TEST STAND-IN run: no verdict" and r["fid"] for r in rows)
    assert "**TEST STAND-IN run**" in (workdir / PAPER / "table.md").read_text()
    claims = list(csv.DictReader((workdir / PAPER / "claims.csv").open()))
    assert claims and all(c["verdict"] == "" for c in claims)  # no verdict from random weights
    metrics = json.loads((workdir / PAPER / "metrics" / "B-pretrained.json").read_text())
    assert "TEST STAND-IN" in metrics["protocol"]["test_standin"]
    claims_md = (workdir / "results" / "claims.md").read_text()
    assert "cca-llamagen-paper" in claims_md and "cca-var-paper" in claims_md


@pytest.mark.slow
def test_var_chain_fine_tunes_samples_and_tabulates(mini):
    workdir, _ = mini
    pretrained = torch.load(workdir / "fixtures" / "var" / "var_d16.TEST-STANDIN.pth", weights_only=True)
    tuned = torch.load(workdir / VAR_PAPER / "models" / "16-cca-b0.02-l50.official.pth", weights_only=True)
    assert tuned.keys() == pretrained.keys()
    assert sum(not torch.equal(pretrained[k], tuned[k]) for k in pretrained) > len(pretrained) // 2
    images = {}
    for point in VAR_POINTS:
        with np.load(workdir / VAR_PAPER / "samples" / f"{point}.npz") as z:
            assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (16, 64, 64, 3)
            images[point] = z["arr_0"]
    assert not np.array_equal(images["16-pretrained"], images["16-cca-b0.02-l50"])
    rows = list(csv.DictReader((workdir / VAR_PAPER / "table.csv").open()))
    run = {r["method"]: r for r in rows if r["fid"]}
    assert sorted(run) == ["cca", "cfg", "pretrained"] and all(r["model"] == "d16" for r in rows)
    assert all(r["verdict"] == "TEST STAND-IN run: no verdict" for r in run.values())
    assert run["cfg"]["cfg"] == "1.5" and (run["cca"]["beta"], run["cca"]["lam"]) == ("0.02", "50")


@pytest.mark.slow
def test_a_killed_sampling_shard_keeps_its_finished_chunks(mini):
    """Lose a shard's second chunk and its manifest (as a job killed while writing it): the rerun
    of that job draws only the lost chunk, identical to the first time."""
    workdir, _ = mini
    shard = workdir / PAPER / "samples" / "B-pretrained" / "shard-000-of-002.json"
    chunks = sorted(Path(f"{shard}.chunks").glob("chunk_*.npz"))
    assert len(chunks) == 2
    kept, lost = chunks
    kept_mtime = kept.stat().st_mtime_ns
    with np.load(lost) as z:
        lost_arrays = {k: z[k].copy() for k in z.files}
    shard.unlink()
    lost.unlink()
    proc = run_snakemake(workdir, "--cores", "2", str(shard.relative_to(workdir)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rule cca_llamagen_paper_sample_shard:" in proc.stdout + proc.stderr
    assert shard.is_file() and kept.stat().st_mtime_ns == kept_mtime  # the finished chunk was kept
    with np.load(lost) as z:
        assert z.files == list(lost_arrays) and all(np.array_equal(z[k], lost_arrays[k]) for k in z.files)


PAPER_FILES = {"cca-llamagen": ("cca_llamagen", "gpt_checkpoints", ("vq_checkpoint", "reference_batch", "inception")),
               "cca-var": ("cca_var", "var_checkpoints", ("vae_checkpoint", "reference_batch", "inception"))}


def _paper_config_with_files(tmp_path: Path, name: str = "cca-llamagen") -> Path:
    """config/paper/<name>.yaml with every local path pointing at an empty stand-in file, in a
    folder that holds the checkout's config/ as a user's run from the checkout does."""
    section, checkpoints, keys = PAPER_FILES[name]
    cfg = yaml.safe_load((ROOT / "config" / "paper" / f"{name}.yaml").read_text())
    p = cfg[section]["paper"]
    files = tmp_path / "files"
    (files / "train").mkdir(parents=True)
    p[checkpoints] = {k: str(files / Path(v).name) for k, v in p[checkpoints].items()}
    for key in keys:
        p[key] = str(files / Path(p[key]).name)
    for path in [*p[checkpoints].values(), *(p[k] for k in keys)]:
        Path(path).write_bytes(b"")
    p["imagenet_train"] = str(files / "train")
    shutil.copytree(ROOT / "config", tmp_path / "config")
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def _planned_counts(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """rule -> job count of `snakemake -n --quiet rules`."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(line.split()[:2] for line in proc.stdout.splitlines()
                if len(line.split()) == 2 and line.split()[1].isdigit())


def test_paper_config_plans_the_whole_chain_for_all_five_sizes(tmp_path):
    # As a user runs it from the checkout: the toy config/config.yaml is there, the paper one is given.
    counts = _planned_counts(run_snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile",
                                           str(_paper_config_with_files(tmp_path))))
    sizes, points, shards = 5, 5 * 4, 10
    assert counts["cca_llamagen_paper_codes_shard"] == "8" and counts["cca_llamagen_paper_codes"] == "1"
    assert counts["cca_llamagen_paper_finetune"] == str(sizes * 2)  # the CCA and the CCA+CFG fine-tune
    assert counts["cca_llamagen_paper_sample_shard"] == str(points * shards)
    assert counts["paper_merge_shards"] == counts["paper_evaluate"] == str(points)
    assert counts["paper_table"] == "1" and counts["cca_llamagen_check_official"] == "1"
    # used alone: nothing of the toy tiers (config/config.yaml) is planned
    toy = [r for r in counts if r.startswith(("train_", "autoguidance", "star", "cca_var", "fashion_mnist"))]
    assert not toy, toy


def test_paper_config_fsdp_sizes_and_torchrun_in_the_planned_commands(tmp_path):
    # the targets before --configfile, which takes every argument after it
    proc = run_snakemake(tmp_path, "-n", "-p", f"{PAPER}/models/3B-cca-b0.02-l500.pt",
                         f"{PAPER}/models/B-cca-b0.02-l1000.pt", "--configfile", str(_paper_config_with_files(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cmds = [line for line in proc.stdout.splitlines() if "llamagen-cca-official" in line]
    assert len(cmds) == 2 and all("torchrun --standalone --nproc-per-node=8" in c for c in cmds)
    assert all("--global-batch 256 --micro-batch 2" in c and "--accumulation-reduce sum" in c for c in cmds)
    assert any("--size 3B --beta 0.02 --lam 500.0" in c for c in cmds)


def test_var_paper_config_plans_the_whole_chain_for_all_four_depths(tmp_path):
    counts = _planned_counts(run_snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile",
                                           str(_paper_config_with_files(tmp_path, "cca-var"))))
    points = 4 * 3  # w/o guidance, CFG, CCA per depth (the paper has no VAR CCA+CFG point)
    assert counts["cca_var_paper_finetune"] == "4" and counts["cca_var_paper_sample_shard"] == str(points * 10)
    assert counts["paper_merge_shards"] == counts["paper_evaluate"] == str(points)
    assert counts["paper_table"] == "1" and counts["cca_var_check_official"] == "1"
    assert not [r for r in counts if r.startswith(("cca_llamagen", "train_", "star", "autoguidance"))]


def test_var_paper_config_plans_the_opt_in_cca_cfg_point(tmp_path):
    # The paper gives no VAR CCA+CFG beta / lambda (cca.md §1.3), so the default leaves it out; a user
    # who names one gets its fine-tune and its CFG-sampled point through the same shared machinery.
    path = _paper_config_with_files(tmp_path, "cca-var")
    cfg = yaml.safe_load(path.read_text())
    p = cfg["cca_var"]["paper"]
    p["methods"] = [*p["methods"], "cca_cfg"]
    p["cca_cfg_points"] = {d: {"beta": 0.02, "lam": 1} for d in p["cfg_scales"]}
    p["cca_cfg_scales"] = dict(p["cfg_scales"])
    path.write_text(yaml.safe_dump(cfg))
    counts = _planned_counts(run_snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", str(path)))
    assert counts["cca_var_paper_finetune"] == "8" and counts["cca_var_paper_sample_shard"] == str(4 * 4 * 10)
    assert counts["paper_evaluate"] == "16"


def test_paper_config_missing_imagenet_names_the_key(tmp_path):
    path = _paper_config_with_files(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["cca_llamagen"]["paper"]["imagenet_train"] = str(tmp_path / "nowhere")
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"config key cca_llamagen.paper.imagenet_train: {tmp_path / 'nowhere'} not found" in out
    assert not (tmp_path / "results").exists()
