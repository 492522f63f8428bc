"""tools/verdict_power.py: the vectorised rule against report/verdict.py, the simulated outcome
probabilities against the noncentral t, and the pooling of runs' printed effects."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from guidance_repro.errors import ReproError
from guidance_repro.report import verdict as vd

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("verdict_power", ROOT / "tools" / "verdict_power.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("r", [2, 3, 4, 5, 8])
def test_vectorised_rule_is_the_rule_of_decide(tool, r):
    rng = np.random.default_rng(r)
    e = rng.normal(rng.uniform(-3, 3, size=(400, 1)), 1.0, size=(400, r))
    got = tool.vectorised_verdicts(e)
    want = [vd.OUTCOMES.index(vd.decide(row)["verdict"]) for row in e]
    assert got.tolist() == want
    assert len(set(want)) == 3  # all three outcomes were exercised


def test_the_old_sign_condition_is_the_only_difference(tool):
    # mean 0.8, SE 0.2: t = 4 > 2.78 at R = 5, but one replicate is 0: the rule says holds, the
    # rule until 3b4f9a7 (sign condition) said inconclusive
    e = np.array([[0.0, 1.0, 1.0, 1.0, 1.0]])
    assert vd.decide(e[0])["verdict"] == vd.HOLDS
    assert tool.vectorised_verdicts(e).tolist() == [0]
    assert tool.vectorised_verdicts(e, sign_rule=True).tolist() == [2]


def _mc_tolerance(p, n):
    return 4 * math.sqrt(max(p * (1 - p), 1e-4) / n)


@pytest.mark.parametrize("delta", [0.8, 1.5, 2.5])
def test_holds_probability_at_r3_is_the_noncentral_t_power(tool, delta):
    # at R = 3, mean > 4.30 SE forces every replicate positive, so P(holds) is the one-sided power
    # of the t test: 1 - F_nct(t; df 2, noncentrality delta sqrt 3)
    t = vd.critical_t(3)
    want = 1 - stats.nct.cdf(t, 2, delta * math.sqrt(3))
    got = tool.outcome_probabilities(delta, 3)[vd.HOLDS]
    assert abs(got - want) < _mc_tolerance(want, tool.DRAWS)


def test_t_only_rule_at_r10_is_the_two_sided_power_and_the_sign_rule_is_below_phi_to_the_r(tool):
    delta, r = 1.0, 10
    t = vd.critical_t(r)
    nc = delta * math.sqrt(r)
    p = tool.outcome_probabilities(delta, r)
    assert abs(p[vd.HOLDS] - (1 - stats.nct.cdf(t, r - 1, nc))) < _mc_tolerance(0.5, tool.DRAWS)
    assert abs(p[vd.FAILS] - stats.nct.cdf(-t, r - 1, nc)) < 0.002
    with_sign = tool.outcome_probabilities(delta, r, sign_rule=True)[vd.HOLDS]
    assert with_sign <= stats.norm.cdf(delta) ** r + _mc_tolerance(0.2, tool.DRAWS)


def test_no_effect_is_decided_at_most_five_percent_of_the_time(tool):
    for r in (3, 5):
        p = tool.outcome_probabilities(0.0, r)
        assert p[vd.HOLDS] + p[vd.FAILS] < 0.05 + _mc_tolerance(0.05, tool.DRAWS)
        assert abs(p[vd.HOLDS] - p[vd.FAILS]) < _mc_tolerance(0.025, tool.DRAWS)


def test_agreement_is_near_one_far_from_the_line_and_about_half_on_it(tool):
    assert tool.agreement(8.0, 3) > 0.99
    assert tool.agreement(-8.0, 3) > 0.99
    # delta where P(holds) at R = 3 is about one half: agreement ~ 0.5
    assert 0.45 < tool.agreement(2.6, 3) < 0.6
    assert tool.replicates_needed(8.0) == 3


def _measured(effects):
    return vd.measured_text({"a": [0.0] * len(effects)}, vd.decide(effects))


def test_effect_is_read_back_from_the_printed_cell():
    text = _measured([1.0, 2.0, 3.0])
    assert vd.effect_from_text(text, "x") == (2.0, 0.58, 3)
    with pytest.raises(ReproError, match="claims row 4"):
        vd.effect_from_text("FID 3.1 ± 0.2", "claims row 4")


def test_pooling_weights_runs_by_replicates_and_degrees_of_freedom(tool):
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    est = tool.pooled([_measured(a), _measured(b)], "claim")
    mu = (sum(a) + sum(b)) / 8
    sigma = math.sqrt((2 * np.var(a, ddof=1) + 4 * np.var(b, ddof=1)) / 6)
    assert est["mu"] == pytest.approx(mu, rel=1e-3)
    assert est["sigma"] == pytest.approx(sigma, rel=0.02)  # the SE is printed to 2 digits
    assert (est["pooled_replicates"], est["replicates_now"]) == (8, 3)
    with pytest.raises(ReproError, match="claim: zero spread"):
        tool.pooled([_measured([1.0, 1.0, 1.0])], "claim")


def test_cli_writes_the_table_and_json_and_refuses_rows_without_effects(tool, tmp_path):
    rows = [{"experiment": "e", "model": "m", "claim": "big", "verdicts": ["holds", "holds"], "agree": True,
             "measured": [_measured([10.0, 11.0, 12.0]), _measured([10.5, 11.0, 12.5])]},
            {"experiment": "e", "model": "m", "claim": "none", "verdicts": ["inconclusive"] * 2, "agree": True,
             "measured": [_measured([-1.0, 0.5, 1.0]), _measured([1.0, -0.5, 0.2])]}]
    src = tmp_path / "stab.json"
    src.write_text(json.dumps({"rows": rows, "agree": 2}))
    out = tmp_path / "power.md"
    assert tool.main([str(src), "--out", str(out), "--replicates", "3", "5"]) == 0
    pred = json.loads(out.with_suffix(".json").read_text())
    assert pred["claims"] == 2 and pred["rows"][0]["agreement"]["3"] > 0.99
    assert "| e | m | big | holds / holds |" in out.read_text()
    rows[1]["measured"] = ["FID 3 ± 1; R = 3"]
    src.write_text(json.dumps({"rows": rows}))
    with pytest.raises(SystemExit, match="e / m / none, run 0: no 'effect"):
        tool.main([str(src)])


def test_planned_replicates_follow_the_slice_and_model_keys(tool):
    cfg = {"replicates": {"count": 3},
           "cca_llamagen": {"models": [{"name": "S", "replicates": 7}, {"name": "M"}],
                            "benchmark": {"repeats": 5}},
           "cca_var": {"depths": [4, 5], "replicate_depths": [4], "replicates": 4},
           "autoguidance": {"toy": {"replicates": 5}, "image": {}},
           "star": {"replicates": 6}}
    plan = {("cca-llamagen", "S", "lowers"): 7, ("cca-llamagen", "M", "lowers"): 3,
            ("cca-llamagen", "S", tool.COST_CLAIM): 5, ("cca-var", "d4", "x"): 4, ("cca-var", "d5", "x"): 1, ("cca-var", "d6", "x"): 0,
            ("autoguidance-toy2d", "", "x"): 5, ("autoguidance-fmnist", "main", "x"): 3,
            ("star-cfg", "toy", "x"): 6}
    for (exp, model, claim), want in plan.items():
        assert tool.planned_replicates(cfg, {"experiment": exp, "model": model, "claim": claim}) == want
    # a model / depth the config does not run: not planned
    assert tool.planned_replicates(cfg, {"experiment": "cca-llamagen", "model": "L", "claim": "x"}) == 0
    assert tool.planned_replicates(cfg, {"experiment": "cca-llamagen", "model": "L", "claim": tool.COST_CLAIM}) == 0
    with pytest.raises(ReproError, match="no config slice known"):
        tool.planned_replicates(cfg, {"experiment": "dit", "model": "", "claim": "x"})


def test_cli_predicts_the_planned_config(tool, tmp_path):
    rows = [{"experiment": "star-cfg", "model": "toy", "claim": "c", "verdicts": ["holds", "inconclusive"],
             "agree": False, "measured": [_measured([1.0, 2.5, 0.8]), _measured([1.2, 2.0, 0.5])]}]
    src, cfg, out = tmp_path / "stab.json", tmp_path / "config.yaml", tmp_path / "power.md"
    src.write_text(json.dumps({"rows": rows, "agree": 0}))
    cfg.write_text("replicates: {count: 3}\nstar: {replicates: 10}\n")
    assert tool.main([str(src), "--config", str(cfg), "--out", str(out), "--replicates", "3", "10"]) == 0
    pred = json.loads(out.with_suffix(".json").read_text())
    row = pred["rows"][0]
    assert row["planned"]["replicates"] == 10
    assert row["planned"]["agreement"] == pytest.approx(row["agreement"]["10"], abs=0.02)
    assert pred["expected_agree_planned"] == pytest.approx(row["planned"]["agreement"])
    assert "Planned R of" in out.read_text()
