"""The family-agnostic CCA report: metrics JSONs -> tidy CSV -> figures (claims: test_cca_claims.py)."""

from __future__ import annotations

import csv
import json

import pytest

from guidance_repro.cli import main
from guidance_repro.io import timing_path
from guidance_repro.report import cca_figures as cf


def _metrics(path, family, model, method, fid, is_mean, cfg=0.0, beta="", lam="", spi=0.01):
    sampler = {"family": family, "model": model, "method": method, "cfg": cfg}
    if beta != "":
        sampler.update(beta=beta, lam=lam)
    path.write_text(json.dumps({"fid": fid, "is_mean": is_mean, "is_std": 0.1, "precision": 0.7,
                                "recall": 0.5, "protocol": {"num_samples": 100, "sampler": sampler}}))
    timing_path(path).write_text(json.dumps({"seconds_per_image": spi}))  # as `evaluate` writes it
    return str(path)


@pytest.fixture()
def table(tmp_path):
    pts = [("var", "d4", "pretrained", 30.0, 4.0, 0.0), ("var", "d4", "cfg", 20.0, 5.0, 1.0),
           ("var", "d4", "cfg", 25.0, 6.0, 2.0), ("var", "d4", "cca", 22.0, 5.5, 0.0, 50, 10),
           ("var", "d4", "cca", 21.0, 5.2, 0.0, 50, 3), ("var", "d4", "cca", 24.0, 5.0, 0.0, 15, 10),
           ("llamagen", "toy-S", "pretrained", 20.0, 5.0, 0.0), ("llamagen", "toy-S", "cca", 18.0, 5.4, 0.0, 1, 10)]
    files = []
    for i, p in enumerate(pts):
        beta, lam = (p[6], p[7]) if len(p) > 6 else ("", "")
        files.append(_metrics(tmp_path / f"m{i}.json", *p[:5], cfg=p[5], beta=beta, lam=lam,
                              spi=0.02 if p[2] == "cfg" else 0.01))
    out = tmp_path / "table.csv"
    assert main(["cca-table", "--metrics", *files, "--out", str(out)]) == 0
    return out


def test_table_has_the_shared_columns_and_every_point(table):
    rows = list(csv.DictReader(open(table)))
    # the sampling cost comes from each metrics file's timing side file
    assert {r["method"]: float(r["seconds_per_image"]) for r in rows}["cfg"] == 0.02
    assert list(rows[0]) == cf.COLUMNS
    assert len(rows) == 8 and {r["family"] for r in rows} == {"var", "llamagen"}
    assert [r["method"] for r in rows if r["family"] == "var"][0] == "pretrained"


def test_figures_are_written_per_family(table, tmp_path):
    outs = [tmp_path / f for f in ("bars.png", "tradeoff.png", "beta.png")]
    assert main(["cca-figures", "--table", str(table), "--bars", str(outs[0]), "--tradeoff",
                 str(outs[1]), "--beta", str(outs[2])]) == 0
    assert all(o.stat().st_size > 1000 for o in outs)


def test_metrics_without_tags_are_an_error(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"fid": 1.0, "protocol": {}}))
    assert main(["cca-table", "--metrics", str(tmp_path / "bad.json"), "--out", str(tmp_path / "t.csv")]) == 2
