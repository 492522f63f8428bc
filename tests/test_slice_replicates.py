"""Each slice (and each LlamaGen model) takes its own R: its `replicates` key overrides
replicates.count (workflow/rules/common.smk replicate_count), and the plan re-trains exactly the
replicates 1..R-1 of that slice's claim models and hands their points to its claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.dag
SMOKE_CONFIG = ROOT / ".test" / "config" / "config.yaml"
TARGETS = ["results/cca_llamagen/claims.json", "results/cca_var/claims.json", "results/star/claims.csv",
           "results/autoguidance/toy2d/figure1.png", "results/autoguidance/fmnist/report/claims.csv"]


def _config(tmp_path: Path, edit) -> None:
    cfg = yaml.safe_load(SMOKE_CONFIG.read_text())
    cfg["replicates"] = {"count": 2, "seed_stride": 1000}
    edit(cfg)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))


def _replicates_planned(plan: str, pattern: str) -> set[int]:
    """The replicates r >= 1 of the files matching `pattern` (with a group for r) that the plan writes."""
    return {int(m) for m in re.findall(pattern, plan)}


def test_slice_and_model_replicates_override_the_global_count(tmp_path):
    def edit(cfg):
        cfg["cca_llamagen"]["models"][0]["replicates"] = 4   # S: R = 4
        cfg["cca_llamagen"]["models"][1]["replicates"] = 1   # M: replicate 0 only
        cfg["star"]["replicates"] = 3
        cfg["autoguidance"]["toy"]["replicates"] = 3
        cfg["autoguidance"]["image"]["replicates"] = 1
        # cca_var keeps replicates.count (2)
    _config(tmp_path, edit)
    proc = run_snakemake(tmp_path, "-n", "-p", *TARGETS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = proc.stdout
    assert _replicates_planned(plan, r"cca_llamagen/models/S-pretrained-r(\d+)\.pt") == {1, 2, 3}
    assert _replicates_planned(plan, r"cca_llamagen/models/M-\S*-r(\d+)\.pt") == set()
    assert _replicates_planned(plan, r"star/models/rope-low-r(\d+)\.pt") == {1, 2}
    assert _replicates_planned(plan, r"autoguidance/toy2d/models/main-r(\d+)\.pt") == {1, 2}
    assert _replicates_planned(plan, r"autoguidance/fmnist/models/\S+-r(\d+)\.pt") == set()
    assert _replicates_planned(plan, r"cca_var/models/d\d+-pretrained-r(\d+)\.pt") == {1}
    # the LlamaGen claims read S's four replicates and M's one
    claims = next(line for line in plan.splitlines()
                  if line.startswith("Shell command: guidance-repro cca-claims") and "cca_llamagen" in line)
    assert "cca_llamagen/metrics/S-pretrained-cfg1-r3.json" in claims
    assert "cca_llamagen/metrics/M-pretrained-cfg1.json" in claims
    assert "M-pretrained-cfg1-r1" not in claims
    # the 2-D toy's one figure job takes every replicate's models and seeds
    figure = next(line for line in plan.splitlines()
                  if line.startswith("Shell command:") and "autoguidance/toy2d/figure1.png" in line)
    assert "models/main-r2.pt" in figure and "main-r3" not in figure


def test_replicates_below_one_names_the_key(tmp_path):
    _config(tmp_path, lambda cfg: cfg["star"].update(replicates=0))
    proc = run_snakemake(tmp_path, "-n", "results/star/claims.csv")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "replicates" in out and "minimum" in out
