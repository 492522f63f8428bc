"""The one verdict rule of the toy tier (report/verdict.py) on constructed replicate sets, checked
against the rule computed by hand, and the replicate seeds / suffixes (guidance_repro.replicates)."""

from __future__ import annotations

import math
import statistics

import pytest

from guidance_repro import replicates
from guidance_repro.errors import ReproError
from guidance_repro.report import verdict as vd


@pytest.mark.parametrize("effects, expected", [
    ([5.0, 6.0, 7.0], vd.HOLDS),                 # mean 6, SE 0.58: clear and unanimous
    ([-5.0, -6.0, -7.0], vd.FAILS),              # the mirror image
    ([1.0, 1.0, 10.0], vd.INCONCLUSIVE),         # unanimous, but mean 4 < t SE = 4.30 * 3
    ([3.0, 5.0, 8.0], vd.INCONCLUSIVE),          # mean 5.33 > 2 SE = 2.9 but < t SE = 6.25 (R = 3)
    ([3.0, 5.0, 8.0, 4.0, 6.0], vd.HOLDS),       # like scatter at R = 5: t SE = 2.39 < 5.2
    ([9.0, 8.0, -0.5], vd.INCONCLUSIVE),         # one replicate disagrees: mean 5.5 < t SE = 13
    ([6.0, 7.0, 5.0, 8.0, 6.0, 7.0, -0.5], vd.HOLDS),  # R = 7: one sign disagrees, mean 5.5 > t SE = 2.6
    ([-6.0, -7.0, -5.0, -8.0, -6.0, -7.0, 0.5], vd.FAILS),  # its mirror image
    ([0.0, 0.0, 0.0], vd.INCONCLUSIVE),          # no effect at all is not a direction
    ([3.0, 3.0, 3.0], vd.HOLDS),                 # zero spread, all positive
    ([4.0], vd.INCONCLUSIVE),                    # one replicate has no spread to judge by
    ([2.0, 2.1], vd.HOLDS),                      # t = 12.7 at R = 2, SE 0.05
    ([2.0, 2.5], vd.INCONCLUSIVE),               # SE 0.25, t SE = 3.2
])
def test_three_outcomes(effects, expected):
    got = vd.decide(effects)
    assert got["verdict"] == expected and got["replicates"] == len(effects)


def test_mean_and_standard_error_match_statistics_module():
    e = [3.2, -1.0, 7.5, 2.25]
    got = vd.decide(e)
    assert got["effect_mean"] == pytest.approx(statistics.mean(e))
    assert got["effect_se"] == pytest.approx(statistics.stdev(e) / math.sqrt(len(e)))


# Two-sided 95 % Student-t quantiles from a printed table (Fisher & Yates), not from scipy.
T_TABLE = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 10: 2.262}


@pytest.mark.parametrize("r", sorted(T_TABLE))
def test_critical_t_is_the_tables_quantile(r):
    assert vd.critical_t(r) == pytest.approx(T_TABLE[r], abs=1e-3)


@pytest.mark.parametrize("r", [3, 5])
def test_rule_boundary_is_t_standard_errors(r):
    # e = m + d * z with z of mean 0 and sd 1: SE = d / sqrt(R); holds iff m > t d / sqrt(R)
    z = [-1.0] * (r // 2) + [0.0] * (r % 2) + [1.0] * (r // 2)  # |z| <= 1 < t / sqrt(R): signs agree
    z = [x / statistics.stdev(z) for x in z]
    d = 1.0
    edge = T_TABLE[r] * d / math.sqrt(r)
    assert vd.decide([edge + 0.01 + d * x for x in z])["verdict"] == vd.HOLDS
    assert vd.decide([edge - 0.01 + d * x for x in z])["verdict"] == vd.INCONCLUSIVE
    assert vd.decide([-edge - 0.01 + d * x for x in z])["verdict"] == vd.FAILS
    assert vd.decide([edge + 0.01 + d * x for x in z])["critical_t"] == pytest.approx(T_TABLE[r], abs=1e-3)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_interval_implies_one_sign_up_to_four_replicates(r):
    # Samuelson: no value lies more than sd (R - 1) / sqrt(R) from the mean, and t >= R - 1 for R <= 4,
    # so a decided verdict at R <= 4 always has every replicate on its side (why the rule needs no
    # sign condition there); at R = 5 a decided verdict can have one replicate against it.
    import random
    rng = random.Random(r)
    for _ in range(2000):
        e = [rng.gauss(2.0, 1.0) for _ in range(r)]
        got = vd.decide(e)
        if got["verdict"] == vd.HOLDS:
            assert all(x > 0 for x in e), e
        if got["verdict"] == vd.FAILS:
            assert all(x < 0 for x in e), e
    assert vd.decide([5.0, 5.5, 6.0, 6.5, -0.4])["verdict"] == vd.HOLDS


def test_critical_t_needs_two_replicates():
    with pytest.raises(ReproError, match="need >= 2"):
        vd.critical_t(1)


def test_paired_folds_margin_and_needs_equal_replicates():
    # lower FID is better: effect = FID(before) - FID(after)
    assert vd.paired([100.0, 98.0, 103.0], [90.0, 91.0, 92.0])["verdict"] == vd.HOLDS
    # a threshold (ratio >= 1.7) folded in as a margin
    assert vd.paired([1.9, 1.95, 1.88], [0.0, 0.0, 0.0], margin=1.7)["verdict"] == vd.HOLDS
    assert vd.paired([1.6, 1.65, 1.62], [0.0, 0.0, 0.0], margin=1.7)["verdict"] == vd.FAILS
    with pytest.raises(ReproError, match="same replicates"):
        vd.paired([1.0, 2.0], [1.0])


def test_bad_inputs_are_refused():
    with pytest.raises(ReproError, match="at least one"):
        vd.decide([])
    with pytest.raises(ReproError, match="non-finite"):
        vd.decide([1.0, float("nan"), 2.0])
    with pytest.raises(ReproError, match="line 3: verdict must be"):
        vd.normalise("maybe", "x.csv: line 3")


def test_text_and_counts():
    r = vd.paired([100.0, 98.0, 103.0], [90.0, 91.0, 92.0])
    text = vd.measured_text({"pretrained": [100.0, 98.0, 103.0], "CCA": [90.0, 91.0, 92.0]}, r)
    assert text.startswith("pretrained 100.3 ± 2.5; CCA 91 ± 1; effect 9.33 ± ")
    assert text.endswith("R = 3")
    assert vd.normalise("TRUE", "x") == vd.HOLDS and vd.normalise("", "x") == ""
    assert vd.counts_text([vd.HOLDS, vd.INCONCLUSIVE, "", vd.HOLDS]) == \
        "2 hold, 0 do not hold, 1 inconclusive (of 3 measured)"


def test_replicate_seeds_and_suffixes():
    assert replicates.replicate_seed(7, 0, 1000) == 7          # replicate 0 = the configured run
    assert replicates.replicate_seed(7, 2, 1000) == 2007
    assert replicates.with_seed({"steps": 3}, 1, 1000) == {"steps": 3, "seed": 1000}
    assert [replicates.suffix(r) for r in range(3)] == ["", "-r1", "-r2"]
    assert [replicates.parse_suffix(replicates.suffix(r)) for r in range(3)] == [0, 1, 2]
    with pytest.raises(ReproError, match="not a replicate suffix"):
        replicates.parse_suffix("-r0")
    with pytest.raises(ReproError, match="replicate -1"):
        replicates.replicate_seed(0, -1, 1000)
