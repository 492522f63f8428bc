"""The VAR slice's replicate chains (workflow/rules/cca_var.smk): the claim models of the depths in
``cca_var.replicate_depths`` are re-trained for replicates r >= 1 with their seeds moved, sampled
with a moved sampling seed and tagged with their replicate; other depths have replicate 0 only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.dag
SMOKE_CONFIG = ROOT / ".test" / "config" / "config.yaml"
STRIDE = 1000


def _plan(tmp_path: Path, **var) -> str:
    """The dry run's shell commands of the VAR claims with the smoke config, R = 3."""
    cfg = yaml.safe_load(SMOKE_CONFIG.read_text())
    cfg["replicates"] = {"count": 3, "seed_stride": STRIDE}
    cfg["cca_var"].update(var)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", "-p", "cca_var_claims")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _command(plan: str, out: str) -> str:
    """The one planned shell command that writes ``out``."""
    hits = [line for line in plan.splitlines()
            if line.startswith("Shell command: guidance-repro") and f"--out {out} " in line]
    assert len(hits) == 1, f"{out}: {len(hits)} planned commands"
    return hits[0]


def test_replicates_re_train_only_the_replicate_depths_with_moved_seeds(tmp_path):
    plan = _plan(tmp_path, depths=[2, 3], replicate_depths=[2])
    models = "results/cca_var/models"
    for r in (1, 2):
        pre = _command(plan, f"{models}/d2-pretrained-r{r}.pt")
        assert f'"seed": {r * STRIDE}' in pre and '"depth": 2' in pre
        cca = _command(plan, f"{models}/d2-cca-b50-l10-r{r}.pt")
        assert f"pretrained={models}/d2-pretrained-r{r}.pt" in cca and f'"seed": {r * STRIDE}' in cca
        for point in ("pretrained-cfg0", "cca-b50-l10-cfg0", "pretrained-cfg1"):
            sample = _command(plan, f"results/cca_var/samples/d2-{point}-r{r}.npz")
            assert f"--seed {r * STRIDE} " in sample
            assert f"--tag replicate={r} --tag train_seed={r * STRIDE}" in sample
    # replicate 0 is the configured run: paths and seeds unchanged
    assert '"seed": 0' in _command(plan, f"{models}/d3-pretrained.pt")
    assert "--seed 0 " in _command(plan, "results/cca_var/samples/d3-pretrained-cfg0.npz")
    # depth 3 is not replicated; the claims read every replicate's claim points
    assert not re.search(r"d3-\S*-r\d", plan)
    claims = _command(plan, "results/cca_var/claims.json")
    for stem in ("d2-pretrained-cfg0-r2", "d2-cca-b50-l10-cfg0-r1", "d3-pretrained-cfg1", "d2-pretrained-cfg1"):
        assert f"results/cca_var/metrics/{stem}.json" in claims
    assert "--evaluator-quality results/evaluators/classifier_quality.json" in claims


def test_replicate_depth_outside_the_depths_names_the_key(tmp_path):
    cfg = yaml.safe_load(SMOKE_CONFIG.read_text())
    cfg["cca_var"]["replicate_depths"] = [7]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", "cca_var_claims")
    assert proc.returncode != 0
    assert "config key cca_var.replicate_depths: depth 7" in proc.stdout + proc.stderr
