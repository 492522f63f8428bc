"""Toy STAR claims: constructed replicate tables -> the verdicts of the one rule, the floor text."""

import csv

import pytest

from guidance_repro.errors import ReproError
from guidance_repro.report import star_claims as sc
from guidance_repro.report import star_report as sr
from guidance_repro.report.verdict import FAILS, HOLDS, INCONCLUSIVE

N = 40  # fine-tuning steps of the main model


def _row(rep, pos, method, cfg, fid, clip, lam="", steps=N):
    return {"point": f"{pos}-{method}-{cfg}-{lam}-{rep}", "pos": pos, "steps": steps, "method": method,
            "cfg": float(cfg), "beta": "", "lam": lam, "replicate": rep, "fid": float(fid),
            "clip_score": float(clip), "num_samples": 500.0}


def _replicate(rep, rope_fid, abs_fid, clip0=0.20, clip3=0.25, cca_clip=0.24, cfg_fids=(90, 95), cca_fid=85):
    return [_row(rep, "rope", "cfg", 1, rope_fid, 0.22), _row(rep, "absolute", "cfg", 1, abs_fid, 0.21),
            _row(rep, "rope", "pretrained", 0, 100, clip0),
            _row(rep, "rope", "cfg", 3, cfg_fids[1], clip3),
            _row(rep, "rope", "cca", 0, cca_fid, cca_clip, lam=10.0)]


def _floors():
    return [_row(0, "", "reconstruction", 0, 12.5, 0.3, steps=0), _row(0, "", "data", 0, 3.25, 0.31, steps=0)]


def _by_claim(rows):
    return {(c["experiment"], c["claim"][:20]): c for c in sc.claims(rows, 3.0, 10.0)}


def test_consistent_replicates_hold_and_the_floor_is_read_from_the_table():
    rows = _floors() + [r for k, (a, b) in enumerate([(80, 90), (82, 95), (79, 88)])
                        for r in _replicate(k, a, b, cca_fid=70)]
    cl = sc.claims(rows, 3.0, 10.0)
    assert [c["verdict"] for c in cl] == [HOLDS] * 4
    assert all(c["replicates"] == 3 for c in cl)
    res = cl[0]
    assert res["experiment"] == "star-resolution"
    assert res["effects"] == [10.0, 13.0, 9.0]
    assert "RoPE FID 80.33 ± 1.5" in res["measured"] and "R = 3" in res["measured"]
    assert res["floor"].startswith("tokenizer reconstruction FID 12.5; real train vs eval images FID 3.2")
    # the best CFG FID is each replicate's min over cfg 1 (its resolution point) and cfg 3 (95)
    assert cl[3]["effects"] == [10.0, 12.0, 9.0]


def test_best_cfg_fid_is_the_min_within_each_replicate():
    rows = [r for k in range(3) for r in _replicate(k, 80 + k, 90, cfg_fids=(0, 95), cca_fid=70 + k)]
    best = sc.claims(rows, 3.0, 10.0)[3]
    # guided rows per replicate: cfg 1 (the resolution point, FID 80+k) and cfg 3 (95)
    assert best["effects"] == [10.0, 10.0, 10.0]
    assert best["verdict"] == HOLDS


def test_opposite_signs_are_inconclusive_and_a_unanimous_reverse_does_not_hold():
    flip = [r for k, (a, b) in enumerate([(80, 90), (95, 85), (81, 89)]) for r in _replicate(k, a, b)]
    assert sc.claims(flip, 3.0, 10.0)[0]["verdict"] == INCONCLUSIVE
    worse = [r for k in range(3) for r in _replicate(k, 90 + k, 80, clip3=0.15 - 0.01 * k)]
    cl = sc.claims(worse, 3.0, 10.0)
    assert cl[0]["verdict"] == FAILS and cl[1]["verdict"] == FAILS


def test_one_replicate_is_inconclusive_and_a_replicate_lacking_a_side_is_left_out():
    one = _replicate(0, 80, 90)
    assert {c["verdict"] for c in sc.claims(one, 3.0, 10.0)} == {INCONCLUSIVE}
    rows = [r for k in range(3) for r in _replicate(k, 80, 90 + k)]
    rows = [r for r in rows if not (r["replicate"] == 2 and r["method"] == "cca")]
    cl = sc.claims(rows, 3.0, 10.0)
    assert cl[0]["replicates"] == 3 and cl[2]["replicates"] == 2


def test_claim_points_are_the_configured_ones_not_the_best_of_a_sweep():
    rows = [r for k in range(3) for r in _replicate(k, 80, 90, clip3=0.19)]
    # a CCA model at another lambda with a higher CLIP score is not the claim's point
    rows += [_row(0, "rope", "cca", 0, 85, 0.5, lam=3.0)]
    cl = sc.claims(rows, 3.0, 10.0)
    assert cl[1]["verdict"] == FAILS  # cfg 3's CLIP 0.19 < 0.20 in every replicate
    assert cl[2]["effects"] == pytest.approx([0.04] * 3)


def test_no_generated_points_is_an_error():
    with pytest.raises(ReproError, match="no generated points"):
        sc.claims(_floors(), 3.0, 10.0)


def test_claims_csv_has_the_slice_columns_and_verdict(tmp_path):
    rows = _floors() + [r for k in range(3) for r in _replicate(k, 80 - k, 90)]
    sc.write_claims(rows, tmp_path / "c.csv", tmp_path / "c.md", 3.0, 10.0)
    with open(tmp_path / "c.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["experiment", "model", "claim", "test", "measured", "replicates", "floor", "verdict"]
    assert got[0]["verdict"] == HOLDS and got[0]["replicates"] == "3"
    assert (tmp_path / "c.md").read_text().startswith("Rule: verdict over R replicates")


def test_sweep_rows_keep_replicate_zero_without_floors():
    rows = _floors() + _replicate(0, 80, 90) + _replicate(1, 81, 91)
    for r in rows:
        r.update({k: float("nan") for k in sr.CAT_COLUMNS})
    kept = sr.sweep_rows(rows)
    assert {r["replicate"] for r in kept} == {0}
    assert not {r["method"] for r in kept} & set(sr.FLOOR_METHODS)


def test_no_cfg_sweep_means_no_cfg_claim():
    rows = [r for k in range(2) for r in _replicate(k, 80, 90)]
    assert [c["experiment"] for c in sc.claims(rows, 0.0, 10.0)] == ["star-resolution", "star-cca", "star-cca"]
