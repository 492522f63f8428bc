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
    ([1.0, 1.0, 10.0], vd.INCONCLUSIVE),         # unanimous, but mean 4 < 2 SE = 6
    ([9.0, 8.0, -0.5], vd.INCONCLUSIVE),         # clear mean, one replicate disagrees in sign
    ([0.0, 0.0, 0.0], vd.INCONCLUSIVE),          # no effect at all is not a direction
    ([3.0, 3.0, 3.0], vd.HOLDS),                 # zero spread, all positive
    ([4.0], vd.INCONCLUSIVE),                    # one replicate has no spread to judge by
    ([2.0, 2.1], vd.HOLDS),
])
def test_three_outcomes(effects, expected):
    got = vd.decide(effects)
    assert got["verdict"] == expected and got["replicates"] == len(effects)


def test_mean_and_standard_error_match_statistics_module():
    e = [3.2, -1.0, 7.5, 2.25]
    got = vd.decide(e)
    assert got["effect_mean"] == pytest.approx(statistics.mean(e))
    assert got["effect_se"] == pytest.approx(statistics.stdev(e) / math.sqrt(len(e)))


def test_rule_boundary_is_two_standard_errors():
    # e = m + (-d, 0, d): sd = d, SE = d / sqrt(3); holds iff m > 2 d / sqrt(3) (and all > 0)
    d = 1.0
    edge = 2 * d / math.sqrt(3)
    assert vd.decide([edge + 0.01 - d, edge + 0.01, edge + 0.01 + d])["verdict"] == vd.HOLDS
    assert vd.decide([edge - 0.01 - d, edge - 0.01, edge - 0.01 + d])["verdict"] == vd.INCONCLUSIVE


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
