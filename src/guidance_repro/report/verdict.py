"""The one verdict rule of every toy-tier claim: three outcomes decided from replicate spread.

A claim compares two sides (e.g. the guidance-free FID before and after CCA) on R replicates, each
replicate a full re-training of the models the claim compares with its own training seeds (and
its own sampling seed). Per replicate r the *effect* e_r is the difference in the claimed
direction (positive = what the paper claims; e.g. e_r = FID_pretrained,r - FID_CCA,r for "CCA
lowers the FID", or ratio_r - 1.7 for "costs about half", a threshold folded into the effect).
With mean ē, standard error SE = sd(e) / sqrt(R) (sd with R - 1 degrees of freedom) and t the
two-sided 95 % quantile of Student's t with R - 1 degrees of freedom (4.30 at R = 3, 2.78 at R = 5):

- **holds**: R >= 2 and ē > t SE;
- **does not hold**: R >= 2 and ē < -t SE;
- **inconclusive**: anything else, including R < 2 (one replicate has no spread to judge by).

That is: the 95 % confidence interval of the mean effect lies wholly on one side of zero. Why t and
not a fixed 2 SE: an SE from three replicates has two degrees of freedom (2 SE is an 82 % interval
there), and between two seed-shifted runs it moved 2-4x with similar mean effects
(docs/verdict_stability_stop30_amd.json). The t quantile makes "exceeds its spread" a 95 % statement
at any R.

Why no "every replicate agrees in sign" (the rule until 3b4f9a7): for R <= 4 the t interval
already implies it (the smallest of R values is at least ē - sd (R - 1) / sqrt(R), and t SE is
larger than that bound for R = 2, 3, 4), and for R >= 5 it makes more replicates hurt: with
effects e_r ~ Normal(mu, sigma) every sign agrees with probability Phi(mu / sigma)^R, which falls
towards zero as R grows, so a real effect of one or two sigma drifts back to inconclusive when a
slice pays for more re-trainings (tools/verdict_power.py, docs/verdict_power.md). The interval
alone converges to the effect's sign as R grows.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from guidance_repro.errors import ReproError

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
OUTCOMES = (HOLDS, FAILS, INCONCLUSIVE)
CONFIDENCE = 0.95
RULE = ("verdict over R replicates (each a re-training with its own seeds) of the effect e in the "
        "claimed direction: holds if mean(e) > t SE; does not hold if mean(e) < -t SE; inconclusive "
        "otherwise (also when R < 2); SE = sd(e) / sqrt(R), t = the two-sided 95 % Student-t quantile "
        "with R - 1 degrees of freedom (4.30 at R = 3, 2.78 at R = 5, 2.45 at R = 7)")


def critical_t(replicates: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t quantile with ``replicates - 1`` degrees of freedom."""
    if replicates < 2:
        raise ReproError(f"critical_t: {replicates} replicate(s) have no spread (need >= 2)")
    from scipy.stats import t  # lazy: the claims code imports this module, scipy.stats is slow to load
    return float(t.ppf(0.5 + confidence / 2, replicates - 1))


def _finite(values: Iterable, what: str) -> list[float]:
    out = [float(v) for v in values]
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ReproError(f"{what}: non-finite value(s) {bad} among the replicates")
    return out


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (R - 1 degrees of freedom; 0.0 for one value)."""
    v = _finite(values, "mean_sd")
    if not v:
        raise ReproError("mean_sd: no values")
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd


def decide(effects: Sequence[float]) -> dict:
    """The verdict of one claim from its per-replicate effects (positive = the claimed direction):
    {'verdict', 'replicates', 'effect_mean', 'effect_se', 'critical_t', 'effects'}."""
    e = _finite(effects, "decide")
    if not e:
        raise ReproError("decide: a claim needs at least one replicate's effect")
    m, sd = mean_sd(e)
    se = sd / math.sqrt(len(e))
    verdict, t = INCONCLUSIVE, None
    if len(e) >= 2:
        t = critical_t(len(e))
        if m > t * se:
            verdict = HOLDS
        elif m < -t * se:
            verdict = FAILS
    return {"verdict": verdict, "replicates": len(e), "effect_mean": m, "effect_se": se,
            "critical_t": t, "effects": e}


def paired(claimed_higher: Sequence[float], claimed_lower: Sequence[float], margin: float = 0.0) -> dict:
    """``decide`` on e_r = claimed_higher_r - claimed_lower_r - margin, replicate by replicate
    (replicate r of both sides trained with the same seeds, so the pairing removes what they share)."""
    if len(claimed_higher) != len(claimed_lower):
        raise ReproError(f"paired: {len(claimed_higher)} vs {len(claimed_lower)} replicates; the sides "
                         "of a claim must come from the same replicates")
    return decide([a - b - margin for a, b in zip(claimed_higher, claimed_lower)])


def spread(values: Sequence[float], digits: int = 4) -> str:
    """'mean ± sd' of one side over its replicates (just the value for one replicate)."""
    m, sd = mean_sd(values)
    return f"{m:.{digits}g}" if len(values) == 1 else f"{m:.{digits}g} ± {sd:.2g}"


def measured_text(sides: dict[str, Sequence[float]], result: dict, digits: int = 4) -> str:
    """The claims table's 'this run' cell: each side as mean ± sd over R, and the effect ± SE."""
    parts = [f"{name} {spread(v, digits)}" for name, v in sides.items()]
    eff = f"effect {result['effect_mean']:.3g} ± {result['effect_se']:.2g} (SE)"
    return f"{'; '.join(parts)}; {eff}; R = {result['replicates']}"


_EFFECT = re.compile(r"effect (\S+) ± (\S+) \(SE\); R = (\d+)$")


def effect_from_text(text: str, where: str) -> tuple[float, float, int]:
    """(effect mean, SE, R) back from a ``measured_text`` cell (rounded as printed there)."""
    m = _EFFECT.search(str(text).strip())
    if not m:
        raise ReproError(f"{where}: no 'effect <mean> ± <SE> (SE); R = <n>' in {text!r}")
    try:
        return float(m[1]), float(m[2]), int(m[3])
    except ValueError:
        raise ReproError(f"{where}: unreadable effect in {text!r}") from None


def normalise(value, where: str) -> str:
    """A claims CSV verdict cell as one of OUTCOMES or '' (not measured); the two-valued forms of
    older files (true/false, yes/no) read as holds / does not hold."""
    v = str(value if value is not None else "").strip().lower()
    if v in ("true", "yes", "1", HOLDS):
        return HOLDS
    if v in ("false", "no", "0", FAILS):
        return FAILS
    if v == INCONCLUSIVE:
        return INCONCLUSIVE
    if v in ("", "none", "nan", NOT_MEASURED):
        return ""
    raise ReproError(f"{where}: verdict must be one of {', '.join(OUTCOMES)} or empty, got {value!r}")


def counts(verdicts: Iterable[str]) -> dict[str, int]:
    """How many claims came out each way ('' = not measured is not counted)."""
    v = list(verdicts)
    return {o: sum(x == o for x in v) for o in OUTCOMES}


def counts_text(verdicts: Iterable[str]) -> str:
    c = counts(verdicts)
    n = sum(c.values())
    return f"{c[HOLDS]} hold, {c[FAILS]} do not hold, {c[INCONCLUSIVE]} inconclusive (of {n} measured)"
