"""The DAG skeleton: config validation stops a bad run at once with a message naming the key,
the default config's dry run lists the data rules, and the workflow lints and formats clean."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, ROOT, run_snakemake, venv_env, workdir_with_project_config

from guidance_repro.config_schema import property_keys

pytestmark = pytest.mark.dag
SMOKE_CONFIG = ROOT / ".test" / "config" / "config.yaml"


_snakemake = run_snakemake


def _workdir_with(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(SMOKE_CONFIG.read_text())
    edit(cfg)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def _set(path: str, value):
    """Set the key ``path`` (a number indexes a list), creating the mappings above it."""
    def edit(cfg):
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        node[last] = value
    return edit


@pytest.mark.parametrize("key, value, expected", [
    ("evaluators.classifier.train.lr", -0.1, "config key evaluators.classifier.train.lr:"),
    ("evaluators.classifier.train.optimizer", "sgdx", "config key evaluators.classifier.train.optimizer:"),
    ("evaluation.feature_extractor", "vgg", "config key evaluation.feature_extractor:"),
    # a misspelt key is refused, not ignored
    ("evaluation.num_sample", 10, "config key evaluation.num_sample: unknown key (known: clip, "),
    ("tier", "huge", "config key tier:"),
])
def test_bad_config_value_stops_the_run_naming_the_key(tmp_path, key, value, expected):
    proc = _snakemake(_workdir_with(tmp_path, _set(key, value)), "-n")
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


# Every `model` block of the schema (the list entries of cca_llamagen.models as entry 0).
MODEL_BLOCKS = sorted(k for k in property_keys(ROOT / "workflow" / "schemas" / "config.schema.yaml")
                      if k.endswith(".model")) + ["cca_llamagen.models.0"]


@pytest.mark.parametrize("block", MODEL_BLOCKS)
def test_misspelt_model_key_stops_the_dry_run_naming_the_path(tmp_path, block):
    """A typo in a model block stops `snakemake -n` at DAG start, not a job after others ran."""
    proc = _snakemake(_workdir_with(tmp_path, _set(f"{block}.widht", 8)), "-n")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"config key {block}.widht: unknown key (known: " in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def test_missing_dataset_stops_the_run_naming_the_key(tmp_path):
    workdir = _workdir_with(tmp_path, _set("data.fashion_mnist.dir", str(tmp_path / "nowhere")))
    proc = _snakemake(workdir, "-n")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"config key data.fashion_mnist.dir: no Fashion-MNIST files in {tmp_path / 'nowhere'}" in out
    assert not (tmp_path / "results").exists()


def test_default_config_dry_run_lists_the_data_rules(tmp_path):
    proc = _snakemake(workdir_with_project_config(tmp_path), "-n")
    assert proc.returncode == 0, proc.stderr
    assert "fashion_mnist" in proc.stdout


def test_schema_fills_defaults(tmp_path):
    """Keys left out of a config get the schema's defaults (Snakemake's validate)."""
    from snakemake.utils import validate

    cfg = yaml.safe_load(SMOKE_CONFIG.read_text())
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    assert cfg["evaluation"]["pr_k"] == 3
    assert cfg["evaluators"]["classifier"]["train"]["optimizer"] == "adamw"


def test_workflow_is_snakefmt_formatted():
    proc = subprocess.run([PYTHON, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_is_clean_except_the_per_rule_environment_finding(tmp_path):
    # In a folder of its own: `snakemake --lint` writes its log under the working directory's .snakemake/.
    workdir = workdir_with_project_config(tmp_path)
    proc = subprocess.run([PYTHON, str(ROOT / "tools" / "lint_workflow.py"), "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(workdir)], cwd=workdir, capture_output=True, text=True, env=venv_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _star_paper_config(tmp_path: Path, **evaluation) -> Path:
    """config/paper/star-mjhq.yaml with every local file present (empty stand-ins) in tmp_path."""
    cfg = yaml.safe_load((ROOT / "config" / "paper" / "star-mjhq.yaml").read_text())
    files = tmp_path / "files"
    (files / "gen").mkdir(parents=True)
    for name in ("meta.json", "imgs.zip", "inception.pt", "clip.safetensors", "ir.pt", "med.json"):
        (files / name).write_bytes(b"")
    (files / "bert").mkdir()
    cfg["star"]["paper"].update(mjhq_meta=str(files / "meta.json"), mjhq_images=str(files / "imgs.zip"),
                                generated_dir=str(files / "gen"))
    cfg["evaluation"] = {"clip": {"weights": str(files / "clip.safetensors")},
                         "inception": {"weights": str(files / "inception.pt")},
                         "imagereward": {"checkpoint": str(files / "ir.pt"),
                                         "med_config": str(files / "med.json"),
                                         "tokenizer": str(files / "bert")}}
    for key, value in evaluation.items():
        section, name = key.split("__")
        cfg["evaluation"][section][name] = value
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def test_star_paper_tier_plans_the_mjhq_evaluation(tmp_path):
    proc = _snakemake(_star_paper_config(tmp_path), "star_all", "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = dict(line.split() for line in proc.stdout.splitlines()
                  if line.startswith("star_") and len(line.split()) == 2)
    for rule in ("star_mjhq_pack", "star_mjhq_reference", "star_mjhq_features", "star_mjhq_imagereward"):
        assert counts[rule] == "10", (rule, counts)   # one job per MJHQ category
    assert counts["star_mjhq_table"] == "1" and counts["star_check_paper"] == "1"


def test_star_paper_tier_without_generated_images_plans_the_sampling(tmp_path):
    workdir = _star_paper_config(tmp_path)
    cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    files = tmp_path / "files"
    for name in ("star.pth", "vae.pth"):
        (files / name).write_bytes(b"")
    (files / "sd21").mkdir()
    cfg["star"]["paper"].update(generated_dir=None, star_checkpoint=str(files / "star.pth"),
                                vae_checkpoint=str(files / "vae.pth"), text_encoder_dir=str(files / "sd21"))
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = _snakemake(workdir, "star_all", "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = dict(line.split() for line in proc.stdout.splitlines()
                  if line.startswith("star_") and len(line.split()) == 2)
    assert counts["star_mjhq_sample"] == "1" and counts["star_mjhq_pack"] == "10", counts
    proc = _snakemake(workdir, "-n", "-p", "results/star/paper/mjhq/generated_images/manifest.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"star-mjhq-sample --star {files / 'star.pth'} --vae {files / 'vae.pth'}" in proc.stdout
            and "--resolution 512" in proc.stdout and "--top-k 4096 --top-p 0.8" in proc.stdout
            and "--rope-norm 64.0 --rope-theta 10000.0 --qk-scale-clamp log --cfg 4.0" in proc.stdout), proc.stdout
    cfg["star"]["paper"]["star_checkpoint"] = str(files / "absent.pth")  # checked before any job runs
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = _snakemake(workdir, "-n", "star_all")
    assert proc.returncode != 0 and "config key star.paper.star_checkpoint:" in proc.stdout + proc.stderr


def test_star_paper_tier_missing_local_weights_name_the_key(tmp_path):
    workdir = _star_paper_config(tmp_path, inception__weights=str(tmp_path / "absent.pt"))
    proc = _snakemake(workdir, "-n", "star_all")
    assert proc.returncode != 0
    assert "config key evaluation.inception.weights:" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("dropout, share", [("off", True), ("keep", True), ("off", False)])
def test_sweep_fine_tunes_share_one_recorded_reference_with_dropout_off(tmp_path, dropout, share):
    def edit(cfg):
        _set("cca_llamagen.cca.dropout", dropout)(cfg)
        _set("cca_llamagen.cca.share_reference", share)(cfg)
        _set("cca_llamagen.cca.lams", [10, 30])(cfg)  # a sweep on S (the default has none)
    proc = _snakemake(_workdir_with(tmp_path, edit), "-n", "-p", "--forceall")
    assert proc.returncode == 0, proc.stderr
    finetunes = [line for line in proc.stdout.splitlines() if "--task llamagen-cca" in line]
    sweep = [line for line in finetunes if "/S-pretrained.pt" in line]
    assert len(sweep) > 1 and len(finetunes) > len(sweep)  # the sweep on S, and S's replicates (one point each)
    used = dropout == "off" and share
    assert ("rule cca_llamagen_reference_logp:" in proc.stdout) is used
    assert all(("--input reference_logp=results/cca_llamagen/models/S-reference-logp.npz" in line) is used
               for line in sweep)
    assert not any("reference_logp" in line for line in finetunes if line not in sweep)
