"""The CCA claims of both AR families over replicates: constructed replicate metrics -> verdicts."""

from __future__ import annotations

import csv
import json

import pytest

from guidance_repro.cli import main
from guidance_repro.errors import ReproError
from guidance_repro.report import cca_claims as cc
from guidance_repro.report import verdict as vd


def _point(family, model, method, fid, replicate=0, cfg=1.0, beta=None, lam=None, seed=None):
    return {"family": family, "model": model, "method": method, "fid": fid, "cfg": cfg,
            "beta": float("nan") if beta is None else beta, "lam": float("nan") if lam is None else lam,
            "replicate": replicate, **({} if seed is None else {"sampling_seed": seed})}


def _family(family, model, base, cca, cfgs):
    """Points of one model: per replicate r the pretrained FID base[r], CCA FID cca[r] and the
    CFG sweep cfgs[r] = {scale: FID}."""
    pts = []
    for r, (b, c, sweep) in enumerate(zip(base, cca, cfgs)):
        pts.append(_point(family, model, "pretrained", b, r, seed=r * 1000))
        pts.append(_point(family, model, "cca", c, r, beta=49.0, lam=10.0, seed=r * 1000))
        pts += [_point(family, model, "cfg", f, r, cfg=s) for s, f in sweep.items()]
    return pts


def _by_claim(c):
    return {(x["family"], x["model"], x["claim"]): x for x in c["claims"]}


def test_lowers_is_paired_over_replicates():
    # M: every replicate lowers it, far beyond the spread -> holds. S: one replicate rises ->
    # inconclusive (the single-seed min-over-sweep test would have called it either way).
    pts = _family("llamagen", "M", [94.0, 96.0, 95.0], [80.0, 83.0, 81.0], [{2.0: 70.0}] * 3)
    pts += _family("llamagen", "S", [100.0, 101.0, 99.0], [95.0, 103.0, 97.0], [{2.0: 90.0}] * 3)
    got = _by_claim(cc.claims(pts))
    m = got[("llamagen", "M", cc.LOWERS)]
    assert m["verdict"] == vd.HOLDS and m["replicates"] == 3
    assert m["effects"] == [14.0, 13.0, 14.0] and m["cca_point"] == {"beta": 49.0, "lam": 10.0}
    assert "FID no guidance 95 ± 1; FID CCA 81.33 ± 1.5" in m["measured"] and "R = 3" in m["measured"]
    assert [s["pretrained"]["sampling_seed"] for s in m["seeds"]] == [0, 1000, 2000]
    assert got[("llamagen", "S", cc.LOWERS)]["verdict"] == vd.INCONCLUSIVE


def test_matches_takes_each_replicates_best_cfg():
    # CCA 81..83 vs each replicate's best CFG (70, 71, 69 at different scales): clearly worse ->
    # does not hold; VAR's CCA beats its best CFG on every replicate -> holds.
    pts = _family("llamagen", "M", [94.0, 96.0, 95.0], [81.0, 83.0, 82.0],
                  [{1.5: 75.0, 2.0: 70.0}, {1.5: 71.0, 2.0: 74.0}, {1.5: 77.0, 2.0: 69.0}])
    pts += _family("var", "d4", [30.0, 31.0, 29.0], [20.0, 21.0, 19.5], [{1.0: 24.0}, {1.0: 25.0}, {1.0: 23.0}])
    got = _by_claim(cc.claims(pts))
    m = got[("llamagen", "M", cc.MATCHES)]
    assert m["sides"]["best FID CFG"] == [70.0, 71.0, 69.0] and m["best_cfg_scales"] == [2.0, 1.5, 2.0]
    assert m["verdict"] == vd.FAILS
    assert m["gap_closed_mean"] == pytest.approx(((94 - 81) / 24 + (96 - 83) / 25 + (95 - 82) / 26) / 3)
    assert "s = 1.5, 2" in m["test"]
    assert got[("var", "d4", cc.MATCHES)]["verdict"] == vd.HOLDS


def test_one_replicate_is_inconclusive_and_partial_replicates_are_an_error():
    one = cc.claims(_family("llamagen", "M", [94.0], [80.0], [{2.0: 70.0}]))
    assert {x["verdict"] for x in one["claims"]} == {vd.INCONCLUSIVE}
    pts = _family("llamagen", "M", [94.0, 96.0], [80.0, 83.0], [{2.0: 70.0}] * 2)
    pts = [p for p in pts if not (p["replicate"] == 1 and p["method"] == "cca")]
    with pytest.raises(ReproError, match="lack one of the points"):
        cc.claims(pts)


def test_claim_points_are_fixed_a_priori():
    pts = _family("llamagen", "M", [94.0, 96.0], [80.0, 83.0], [{2.0: 70.0}] * 2)
    with pytest.raises(ReproError, match="second cca point"):
        cc.claims(pts + [_point("llamagen", "M", "cca", 75.0, 1, beta=20.0, lam=10.0)])
    with pytest.raises(ReproError, match="not a claim point"):
        cc.claims(pts + [_point("llamagen", "M", "dpo", 75.0, 1)])


def test_cost_claim_has_one_replicate_per_benchmark_pass():
    llamagen = {"family": "llamagen", "model": "S", "guidance_free": {"seconds_all": [1.0, 1.1, 1.0]},
                "cfg": {"seconds_all": [2.0, 2.1, 1.95]}}
    var = {"family": "var", "model": "d4", "runs": {"guidance_free_cache": {"seconds_all": [1.0, 1.0]},
                                                    "cfg_cache": {"seconds_all": [1.8, 1.5]}}}
    got = _by_claim(cc.claims([], [llamagen, var]))
    a = got[("llamagen", "S", cc.COST)]
    assert a["verdict"] == vd.HOLDS and a["sides"]["time ratio CFG / guidance-free"][0] == 2.0
    assert got[("var", "d4", cc.COST)]["verdict"] == vd.INCONCLUSIVE  # 1.8 and 1.5 straddle 1.7
    with pytest.raises(ReproError, match="seconds_all"):
        cc.cost_claim({"cfg_over_guidance_free_time": 2.0})


def test_floor_is_read_from_the_runs_files():
    text = cc.floor_text({"fid": 53.41, "protocol": {"num_samples": 1000}}, {"fid_train10k_vs_test": 3.14})
    assert text == "tokenizer reconstruction FID 53.41 (1000 test images); evaluator train/test FID 3.14 (10k vs 10k)"
    with pytest.raises(ReproError, match="fid_train10k_vs_test"):
        cc.floor_text(None, {"test_accuracy": 0.9})


def _metrics(path, method, fid, replicate, cfg=1.0, beta="", lam=""):
    sampler = {"family": "llamagen", "model": "M", "method": method, "cfg": cfg, "seed": 7 + replicate,
               "replicate": str(replicate), "train_seed": str(100 + replicate)}
    if beta != "":
        sampler.update(beta=beta, lam=lam)
    path.write_text(json.dumps({"fid": fid, "is_mean": 3.0, "protocol": {"num_samples": 100, "sampler": sampler}}))
    return str(path)


def test_cli_writes_the_slice_csv_with_verdict_replicates_and_floor(tmp_path):
    files = []
    for r, (b, c, g) in enumerate([(94.0, 80.0, 70.0), (96.0, 83.0, 72.0), (95.0, 81.0, 71.0)]):
        files.append(_metrics(tmp_path / f"base{r}.json", "pretrained", b, r))
        files.append(_metrics(tmp_path / f"cca{r}.json", "cca", c, r, beta=49, lam=10))
        files.append(_metrics(tmp_path / f"cfg{r}.json", "cfg", g, r, cfg=2.0))
    (tmp_path / "rec.json").write_text(json.dumps({"fid": 50.0}))
    (tmp_path / "q.json").write_text(json.dumps({"fid_train10k_vs_test": 2.5}))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"family": "llamagen", "model": "S", "guidance_free": {"seconds_all": [1, 1, 1]},
                                 "cfg": {"seconds_all": [2, 2.05, 1.98]}}))
    out = tmp_path / "c.json"
    assert main(["cca-claims", "--points", *files, "--benchmark", str(bench), "--reconstruction",
                 str(tmp_path / "rec.json"), "--evaluator-quality", str(tmp_path / "q.json"), "--out", str(out),
                 "--markdown", str(tmp_path / "c.md"), "--csv", str(tmp_path / "c.csv")]) == 0
    rows = {r["claim"]: r for r in csv.DictReader(open(tmp_path / "c.csv"))}
    assert rows[cc.LOWERS]["verdict"] == vd.HOLDS and rows[cc.LOWERS]["replicates"] == "3"
    assert rows[cc.MATCHES]["verdict"] == vd.FAILS and rows[cc.COST]["verdict"] == vd.HOLDS
    assert rows[cc.LOWERS]["floor"] == "tokenizer reconstruction FID 50; evaluator train/test FID 2.5 (10k vs 10k)"
    seeds = json.loads(out.read_text())["claims"][0]["seeds"]
    assert seeds[2] == {"replicate": 2, "pretrained": {"sampling_seed": 9, "train_seed": 102},
                        "cca": {"sampling_seed": 9, "train_seed": 102}}
    assert "holds" in (tmp_path / "c.md").read_text()
    bad = _metrics(tmp_path / "bad.json", "cca", 70.0, 0, beta=20, lam=10)
    assert main(["cca-claims", "--points", *files, bad, "--out", str(tmp_path / "d.json"),
                 "--markdown", str(tmp_path / "d.md")]) == 2
    assert not (tmp_path / "d.json").exists()
