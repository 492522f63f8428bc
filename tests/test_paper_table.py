"""The paper tier's CCA table (report/paper_table.py, cca-paper-table) on constructed metrics files:
every row present, the paper's figures beside ours, the ±5 % verdicts, the point chosen from a
sweep, the Figure 1 chart and the claims rows that report/claims.py aggregates at tier paper."""

from __future__ import annotations

import csv
import json

import pytest

from guidance_repro.cli import main
from guidance_repro.report import cca_paper_numbers as pn
from guidance_repro.report.claims import aggregate


def metrics_file(path, model, method, fid, cfg=1.0, beta=None, lam=None, n=50000, is_mean=100.0):
    path.write_text(json.dumps({
        "fid": fid, "sfid": None, "sfid_status": "not computed (test)", "is_mean": is_mean, "is_std": 1.0,
        "precision": 0.7, "recall": 0.6,
        "protocol": {"num_samples": n, "sampler": {"family": "llamagen", "model": model, "method": method,
                                                   "cfg": cfg, "beta": beta, "lam": lam}}}))
    return str(path)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_paper_numbers_are_the_fact_sheets():
    assert pn.paper_numbers("llamagen", "3B", "pretrained") == {
        "fid": 9.38, "is": 112.9, "precision": 0.69, "recall": 0.67, "source": "cca.md §2.1 (Fig. 1); cca.md §2.2 (Table 2)"}
    assert pn.paper_numbers("llamagen", "B", "cfg")["fid"] == 6.09
    assert pn.paper_numbers("llamagen", "L", "cca")["sfid"] == 7.44
    assert pn.paper_numbers("llamagen", "B", "cca_cfg") == {}
    assert pn.paper_setting("llamagen", "L", "cca") == {"beta": 0.02, "lam": 300}
    assert pn.paper_setting("llamagen", "3B", "cfg") == {"cfg": 1.65}


def test_table_verdicts_rows_figure_and_claims(tmp_path):
    m = [metrics_file(tmp_path / "a.json", "B", "pretrained", 32.0),                      # -0.6 %: within
         metrics_file(tmp_path / "b.json", "B", "cca", 8.0, beta=0.02, lam=1000),          # +13.6 %: differs
         metrics_file(tmp_path / "c.json", "B", "cca", 5.0, beta=0.02, lam=3000),          # not the paper's λ
         metrics_file(tmp_path / "d.json", "B", "cfg", 9.0, cfg=1.5),
         metrics_file(tmp_path / "e.json", "B", "cfg", 6.2, cfg=2.0, n=10000),             # paper's scale
         metrics_file(tmp_path / "f.json", "L", "cca_cfg", 3.0, cfg=2.0, beta=0.02, lam=1)]
    out = {k: tmp_path / f"t.{k}" for k in ("csv", "md", "png")}
    claims = tmp_path / "claims.csv"
    assert main(["cca-paper-table", "--metrics", *m, "--models", "B", "L", "--out", str(out["csv"]),
                 "--markdown", str(out["md"]), "--figure", str(out["png"]), "--claims", str(claims)]) == 0
    rows = read_csv(out["csv"])
    assert [(r["model"], r["method"]) for r in rows] == [(s, x) for s in ("B", "L") for x in pn.METHODS]
    by = {(r["model"], r["method"]): r for r in rows}
    base = by[("B", "pretrained")]
    assert base["paper_fid"] == "32.2" and base["verdict"] == "within ±5 % of the paper"
    assert float(base["fid_rel_diff"]) == pytest.approx((32.0 - 32.2) / 32.2, rel=1e-3)
    cca = by[("B", "cca")]   # the paper's λ = 1000 point, not the lower-FID λ = 3000 one
    assert cca["lam"] == "1000" and cca["setting"] == "the paper's setting"
    assert cca["verdict"] == "differs: +0.96 FID (+13.6%) from the paper's 7.04"
    cfg = by[("B", "cfg")]
    assert cfg["cfg"] == "2" and cfg["verdict"].endswith("(10000 samples, not the paper's 50000)")
    assert by[("L", "cca_cfg")]["verdict"] == "no paper figure" and by[("L", "cca_cfg")]["fid"] == "3"
    assert by[("L", "cca")]["verdict"] == "not run" and by[("L", "cca")]["paper_fid"] == "3.43"
    assert "| B | CCA (w/o guidance) | 8 | 7.04 |" in out["md"].read_text()
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # claims at tier paper, as report/claims.py aggregates them
    agg = aggregate([claims], "paper")
    rep = {(r["model"], r["claim"]): r for r in agg}
    assert rep[("B", "w/o guidance FID reproduces the paper's")]["verdict"] == "holds"
    assert rep[("B", "CCA (w/o guidance) FID reproduces the paper's")]["verdict"] == "does not hold"
    assert rep[("L", "CCA (w/o guidance) FID reproduces the paper's")]["verdict"] == ""   # not run
    lower = rep[("B", "CCA lowers the guidance-free FID")]
    assert lower["verdict"] == "holds" and lower["measured"] == "32.00 → 8.00"
    assert lower["paper_figure"] == "FID 32.2 → 7.04" and lower["comparison"] == "values comparable (paper protocol)"
    assert all(r["paper"] == "cca" and r["paper_protocol"] for r in agg)


def test_points_of_an_unlisted_size_are_refused(tmp_path, capsys):
    m = metrics_file(tmp_path / "a.json", "XL", "cca", 3.0)
    assert main(["cca-paper-table", "--metrics", m, "--models", "B", "--out", str(tmp_path / "t.csv"),
                 "--markdown", str(tmp_path / "t.md"), "--figure", str(tmp_path / "f.png"),
                 "--claims", str(tmp_path / "c.csv")]) == 2
    assert "model(s) ['XL'] not in --models" in capsys.readouterr().err
