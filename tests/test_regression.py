"""The regression check (guidance_repro.report.regression): collecting metrics, measuring bands,
comparing, the two CLI commands, and the seed variants the band-measuring tool runs."""

from __future__ import annotations

import copy
import importlib.util
import json
import math

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from conftest import ROOT
from guidance_repro.cli import main
from guidance_repro.errors import ReproError
from guidance_repro.report import regression


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fake_results(root, fid=150.0, coverage=0.5, accuracy=0.75):
    """A results folder in the layout the DAG writes, with non-metric fields beside the metrics."""
    write(root / "cca_llamagen" / "metrics" / "S-pretrained-cfg2.json",
          {"fid": fid, "is_mean": 1.5, "precision": 0.3, "recall": 0.0,
           "protocol": {"seed": 0, "num_samples": 100, "sampler": {"cfg": 2.0, "seconds": 0.1}}})
    write(root / "autoguidance" / "fmnist" / "metrics" / "cfg-uncond-w2.json", {"fid": 900.0, "protocol": {}})
    write(root / "autoguidance" / "toy2d" / "metrics.json",
          {"panels": {"cfg": {"n": 1024, "branch_coverage": coverage, "mean_log_likelihood": -3.0}},
           "claims": [{"holds": True}], "weights": {"cfg": 4.0}, "seconds": 3.2, "protocol": {"seed": 0}})
    write(root / "evaluators" / "classifier_quality.json",
          {"kind": "classifier", "test_accuracy": accuracy, "feature_dim": 128, "seconds": 4.8, "ok": True})
    write(root / "cca_llamagen" / "claims.json", {"ratio": 2.0})  # not a metrics file pattern
    return root


def test_collect_metrics_names_file_and_key_and_skips_non_metrics(tmp_path):
    m = regression.collect_metrics(fake_results(tmp_path / "results"))
    assert m == {
        "cca_llamagen/metrics/S-pretrained-cfg2.json:fid": 150.0,
        "cca_llamagen/metrics/S-pretrained-cfg2.json:is_mean": 1.5,
        "cca_llamagen/metrics/S-pretrained-cfg2.json:precision": 0.3,
        "cca_llamagen/metrics/S-pretrained-cfg2.json:recall": 0.0,
        "autoguidance/fmnist/metrics/cfg-uncond-w2.json:fid": 900.0,
        "autoguidance/toy2d/metrics.json:panels.cfg.branch_coverage": 0.5,
        "autoguidance/toy2d/metrics.json:panels.cfg.mean_log_likelihood": -3.0,
        "evaluators/classifier_quality.json:test_accuracy": 0.75,
    }


def test_collect_metrics_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(ReproError, match="no such results folder"):
        regression.collect_metrics(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReproError, match="no metrics files found"):
        regression.collect_metrics(tmp_path / "empty")
    bad = tmp_path / "r" / "x" / "metrics" / "p.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    with pytest.raises(ReproError, match="p.json: not valid JSON"):
        regression.collect_metrics(tmp_path / "r")


def test_band_is_min_max_widened_by_the_range():
    values = [140.0, 150.0, 138.0, 162.0, 155.0]
    band = regression.band_of(values)
    a = np.array(values)
    m = a.max() - a.min()
    assert band["low"] == pytest.approx(a.min() - m) and band["high"] == pytest.approx(a.max() + m)
    assert band["center"] == pytest.approx(a.mean())
    assert band["spread"]["std"] == pytest.approx(a.std(ddof=1))
    assert band["spread"]["range"] == pytest.approx(24.0) and band["seeds"] == 5


def test_band_floors_for_values_that_do_not_move():
    band = regression.band_of([2.0, 2.0, 2.0, 2.0])
    assert (band["low"], band["high"]) == (pytest.approx(2.0 - 2e-3), pytest.approx(2.0 + 2e-3))
    zero = regression.band_of([0.0] * 4)
    assert (zero["low"], zero["high"]) == (-1e-6, 1e-6)


def test_measure_bands_needs_enough_runs_with_the_same_metrics():
    runs = [{"a:fid": float(k), "a:is_mean": 1.0} for k in range(4)]
    bands = regression.measure_bands(runs)
    assert set(bands) == {"a:fid", "a:is_mean"} and bands["a:fid"]["values"] == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ReproError, match="3 seed runs given, at least 4"):
        regression.measure_bands(runs[:3])
    odd = copy.deepcopy(runs)
    odd[2]["b:fid"] = 1.0
    with pytest.raises(ReproError, match="seed run 2 .* e.g. b:fid"):
        regression.measure_bands(odd)
    odd = copy.deepcopy(runs)
    odd[1]["a:fid"] = math.nan
    with pytest.raises(ReproError, match="a:fid: not finite"):
        regression.measure_bands(odd)


EXPECTED = {"x/metrics/p.json:fid": regression.band_of([138.0, 150.2, 162.4, 145.0, 155.0]),
            "x/metrics/p.json:precision": regression.band_of([0.2, 0.25, 0.3, 0.22])}


def test_check_in_band_passes_and_new_metrics_are_unchecked():
    result = regression.check({"x/metrics/p.json:fid": 160.0, "x/metrics/p.json:precision": 0.31,
                               "star/metrics/q.json:fid": 3.0}, EXPECTED)
    assert result.ok and result.failures == []
    assert result.checked == sorted(EXPECTED) and result.unchecked == ["star/metrics/q.json:fid"]


def test_check_out_of_band_names_metric_value_and_band():
    result = regression.check({"x/metrics/p.json:fid": 412.3, "x/metrics/p.json:precision": 0.25}, EXPECTED)
    assert not result.ok and len(result.failures) == 1
    band = EXPECTED["x/metrics/p.json:fid"]
    low, high = 138.0 - 24.4, 162.4 + 24.4
    assert (band["low"], band["high"]) == (pytest.approx(low), pytest.approx(high))
    assert result.failures[0] == ("band", f"x/metrics/p.json:fid = 412.3 outside the band [{low:.6g}, {high:.6g}] "
                                          f"(measured over 5 seeds: mean 150.12, min 138, max 162.4)")


def test_check_missing_and_non_finite_metrics_fail():
    result = regression.check({"x/metrics/p.json:fid": math.nan}, EXPECTED)
    assert len(result.failures) == 2
    assert [k for k, _ in result.failures] == ["band", "band"]
    assert result.failures[0][1].startswith("x/metrics/p.json:fid = nan outside the band")
    assert result.failures[1][1].startswith("x/metrics/p.json:precision is missing from the results")


def test_cli_bands_then_check_pass_and_fail(tmp_path, capsys):
    runs = [fake_results(tmp_path / f"s{k}", fid=150.0 + 4 * k, coverage=0.5 + 0.01 * k) for k in range(4)]
    out = tmp_path / "expected.json"
    assert main(["regression-bands", "--runs", *map(str, runs), "--seeds", "0", "1", "2", "3",
                 "--out", str(out), "--meta", '{"made_by": "test"}']) == 0
    doc = json.loads(out.read_text())
    assert doc["made"]["seeds"] == [0, 1, 2, 3] and doc["made"]["made_by"] == "test"
    fid = doc["metrics"]["cca_llamagen/metrics/S-pretrained-cfg2.json:fid"]
    assert (fid["low"], fid["high"]) == (pytest.approx(138.0), pytest.approx(174.0))

    assert main(["regression-check", "--results", str(runs[1]), "--expected", str(out)]) == 0
    assert "8 metrics in their band, 0 golden values, 0 mechanism rules hold, 0 unchecked" in capsys.readouterr().out

    broken = fake_results(tmp_path / "broken", fid=300.0)
    write(broken / "star" / "metrics" / "new.json", {"fid": 1.0})
    assert main(["regression-check", "--results", str(broken), "--expected", str(out)]) == 2
    cap = capsys.readouterr()
    assert "unchecked (not in" in cap.out and "star/metrics/new.json:fid" in cap.out
    assert ("FAIL [band] cca_llamagen/metrics/S-pretrained-cfg2.json:fid = 300 outside the band [138, 174] "
            "(measured over 4 seeds: mean 156, min 150, max 162)") in cap.err
    assert "error: regression check of" in cap.err and "1 of 8 entries failed (1 band)" in cap.err


def test_re_measuring_bands_keeps_the_hand_written_mechanism_rules(tmp_path):
    """The rules are written by hand; a re-measure that dropped them once let CI lose 7 tests' rules."""
    runs = [fake_results(tmp_path / f"s{k}", fid=150.0 + 4 * k, coverage=0.5 + 0.01 * k) for k in range(4)]
    out = tmp_path / "expected.json"
    rules = [{"files": "x/mechanism/*.json", "rule": "zero", "keys": ["a"], "tol": 1e-9, "why": "test"}]
    out.write_text(json.dumps({"metrics": {"old:fid": {"low": 0, "high": 1}}, "made": {"seeds": [9]},
                               "mechanism": rules, "mechanism_about": "by hand"}))
    assert main(["regression-bands", "--runs", *map(str, runs), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["mechanism"] == rules and doc["mechanism_about"] == "by hand"
    assert "old:fid" not in doc["metrics"] and doc["made"]["seeds"] == [0, 1, 2, 3]

    out.write_text("{not json")
    assert main(["regression-bands", "--runs", *map(str, runs), "--out", str(out)]) == 2
    assert out.read_text() == "{not json"


def test_load_expected_errors(tmp_path):
    with pytest.raises(ReproError, match="no expected-metrics file"):
        regression.load_expected(tmp_path / "none.json")
    p = tmp_path / "e.json"
    p.write_text(json.dumps({"metrics": {"a:fid": {"low": 2.0, "high": 1.0}}}))
    with pytest.raises(ReproError, match="metrics.a:fid needs numbers low <= high"):
        regression.load_expected(p)


def test_committed_expected_file_is_well_formed():
    path = ROOT / "tests" / "regression" / "expected.json"
    doc = json.loads(path.read_text())
    bands = regression.load_expected(path)
    assert len(doc["made"]["seeds"]) >= 4 and doc["made"]["smoke_config_sha256"]
    for name, band in bands.items():
        assert band["seeds"] == len(doc["made"]["seeds"]) == len(band["values"]), name
        assert band["low"] <= min(band["values"]) <= max(band["values"]) <= band["high"], name


def load_tool():
    spec = importlib.util.spec_from_file_location("measure_bands", ROOT / "tools" / "measure_regression_bands.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seed_variants_shift_every_run_seed_but_not_the_data():
    tool = load_tool()
    cfg = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    same, _ = tool.seed_variant(cfg, 0)
    full, full_same = copy.deepcopy(cfg), copy.deepcopy(same)
    validate(full, str(tool.SCHEMA)), validate(full_same, str(tool.SCHEMA))
    assert full_same == full  # seed 0 is the committed smoke config
    v, shifted = tool.seed_variant(cfg, 3)
    assert v["seed"] == cfg.get("seed", 0) + 3
    assert v["evaluation"]["seed"] == 3 and v["cca_llamagen"]["pretrain"]["train"]["seed"] == 3
    assert "autoguidance.toy.seed" in shifted and "evaluators.classifier.train.seed" in shifted
    assert not any(k.startswith("data.") for k in shifted)
    assert "seed" not in v["data"].get("compositions", {}) and v["data"] == cfg["data"]
    assert set(v) == set(cfg)  # no section switched on by a seed


MECH = "cca_llamagen/mechanism/S.json"
RULES = [
    {"files": "cca_llamagen/mechanism/*.json", "rule": "zero", "keys": ["cfg_kl.s1"], "tol": 1e-9},
    {"files": "cca_llamagen/mechanism/*.json", "rule": "increasing",
     "keys": ["cfg_kl.s1", "cfg_kl.s2", "cfg_kl.s3"], "min_step": 0.05},
    {"files": "cca_llamagen/mechanism/*.json", "rule": "positive", "keys": ["rise.base"], "min": 1e-3},
    {"files": "cca_llamagen/mechanism/*.json", "rule": "differ", "keys": ["rise.base", "rise.lam"],
     "min_rel": 1e-4},
    {"files": "edm/mechanism/*.json", "rule": "proportional", "keys": ["d.w2", "d.w3"],
     "factors": [1, 2], "rel_tol": 0.01, "min": 1e-6},
]


def mech_metrics(**over):
    m = {f"{MECH}:cfg_kl.s1": 0.0, f"{MECH}:cfg_kl.s2": 0.02, f"{MECH}:cfg_kl.s3": 0.05,
         f"{MECH}:rise.base": 0.5, f"{MECH}:rise.lam": 0.6,
         "edm/mechanism/x.json:d.w2": 0.3, "edm/mechanism/x.json:d.w3": 0.6}
    m.update({f"{MECH}:{k.replace('__', '.')}": v for k, v in over.items()})
    return m


def test_mechanism_rules_pass_on_a_working_method_and_name_the_broken_rule():
    result = regression.check(mech_metrics(), {}, rules=RULES)
    assert result.ok and result.unchecked == [] and len(result.checked) == len(RULES)
    # The CFG scale ignored: KL 0 at every scale.
    broken = regression.check(mech_metrics(cfg_kl__s2=0.0, cfg_kl__s3=0.0), {}, rules=RULES)
    assert [k for k, _ in broken.failures] == ["mechanism"]
    assert "rule increasing on cfg_kl.s1, cfg_kl.s2, cfg_kl.s3 fails: does not grow" in broken.failures[0][1]
    # The negative sign flipped (the margin falls) and λ ignored (two equal rises).
    broken = regression.check(mech_metrics(rise__base=-0.3, rise__lam=-0.3), {}, rules=RULES)
    msgs = [m for _, m in broken.failures]
    assert len(msgs) == 2 and "rule positive" in msgs[0] and "do not differ" in msgs[1]
    # Not linear in w - 1.
    broken = regression.check({**mech_metrics(), "edm/mechanism/x.json:d.w3": 0.3}, {}, rules=RULES)
    assert "not proportional" in broken.failures[0][1]


def test_mechanism_rules_fail_on_missing_files_or_keys():
    m = mech_metrics()
    del m[f"{MECH}:rise.lam"]
    result = regression.check({k: v for k, v in m.items() if not k.startswith("edm/")}, {}, rules=RULES)
    msgs = [msg for _, msg in result.failures]
    assert f"{MECH}:rise.lam is missing from the results (rule differ)" in msgs
    assert any("no results file matches edm/mechanism/*.json" in msg for msg in msgs)


def test_golden_entries_fail_outside_their_tolerance_with_their_kind():
    golden = {"golden/llamagen.json:loss.0": {"value": 3.5, "tol": 1e-5}}
    assert regression.check({"golden/llamagen.json:loss.0": 3.500004}, {}, golden).ok
    result = regression.check({"golden/llamagen.json:loss.0": 3.6}, {}, golden)
    assert result.failures == [("golden", "golden/llamagen.json:loss.0 = 3.6 is not the golden value 3.5 ± 1e-05")]


def test_load_entries_checks_rules_and_golden(tmp_path):
    p = tmp_path / "e.json"
    band = {"low": 0.0, "high": 1.0}
    p.write_text(json.dumps({"metrics": {"a:fid": band}, "mechanism": [{"files": "x", "rule": "bigger", "keys": ["k"]}]}))
    with pytest.raises(ReproError, match=r"mechanism\[0\].rule: must be one of"):
        regression.load_entries(p)
    p.write_text(json.dumps({"metrics": {"a:fid": band}, "mechanism": [{"files": "x", "rule": "zero", "keys": ["k"]}]}))
    with pytest.raises(ReproError, match=r"mechanism\[0\].tol: missing"):
        regression.load_entries(p)
    p.write_text(json.dumps({"metrics": {"a:fid": band}, "golden": {"g:x": {"value": 1.0}}}))
    with pytest.raises(ReproError, match="golden.g:x needs numbers value and tol"):
        regression.load_entries(p)


def test_partial_check_looks_only_at_the_files_the_run_has():
    m = {k: v for k, v in mech_metrics().items() if not k.startswith("edm/")}
    bands = {**EXPECTED, f"{MECH}:cfg_kl.s2": {"low": 0.0, "high": 1.0}}
    assert not regression.check(m, bands, rules=RULES).ok
    result = regression.check(m, bands, rules=RULES, partial=True)
    assert result.ok and f"{MECH}:cfg_kl.s2" in result.checked
    assert "x/metrics/p.json:fid" not in result.checked and len(result.checked) == 1 + 4
