#!/usr/bin/env python
"""How many replicates would each toy claim need for its verdict to come out the same in two
independent runs? A prediction from measured runs (tools/verdict_stability.py's JSON), for sizing
the replicates of issue 23, not a verdict.

Per claim, the runs' effect means and SEs (read back from their 'measured' cells) give a pooled
estimate of the effect mu and of the per-replicate standard deviation sigma (pooled with R - 1
degrees of freedom per run). Under e_r ~ Normal(mu, sigma) the verdict of report/verdict.py
depends on delta = mu / sigma and R only (both the t statistic and the sign rule are scale-free),
so P(holds), P(does not hold), P(inconclusive) at R are computed by simulation, and the chance that
two independent runs agree is the sum of their squares. delta is itself estimated from a handful of
replicates (its standard error is about sqrt(1/n + delta^2 / 2n) for n pooled replicates), so the
figures are a plan, not a promise. The cost claims' "replicates" are benchmark passes, not
re-trainings: their rows are computed the same way.

    .venv/bin/python tools/verdict_power.py docs/verdict_stability.json --out docs/verdict_power.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from guidance_repro.errors import ReproError  # noqa: E402
from guidance_repro.report import verdict as vd  # noqa: E402

DEFAULT_R = (3, 5, 7, 10)
TARGET = 0.9      # "same verdict in two runs" probability that counts as reproducible
MAX_R = 30
DRAWS = 20000


def outcome_probabilities(delta: float, replicates: int, draws: int = DRAWS, seed: int = 0,
                          sign_rule: bool = True) -> dict:
    """P(holds), P(does not hold), P(inconclusive) of the rule at R replicates of Normal(delta, 1)
    effects, by simulation: the rule of vd.decide, vectorised (checked against it in the tests);
    ``sign_rule=False``: the t interval alone, without "every replicate agrees in sign"."""
    if replicates < 2:
        return {vd.HOLDS: 0.0, vd.FAILS: 0.0, vd.INCONCLUSIVE: 1.0}
    e = np.random.default_rng(seed).normal(delta, 1.0, size=(draws, replicates))
    verdicts = vectorised_verdicts(e, sign_rule)
    return {o: float(np.mean(verdicts == i)) for i, o in enumerate(vd.OUTCOMES)}


def vectorised_verdicts(effects: np.ndarray, sign_rule: bool = True) -> np.ndarray:
    """vd.decide's verdict for each row of ``effects`` as an index into vd.OUTCOMES (0 holds,
    1 does not hold, 2 inconclusive): one loop over millions of sets would take minutes."""
    r = effects.shape[1]
    mean = effects.mean(axis=1)
    se = effects.std(axis=1, ddof=1) / math.sqrt(r)
    t = vd.critical_t(r)
    out = np.full(effects.shape[0], 2)
    positive = (effects > 0).all(axis=1) if sign_rule else True
    negative = (effects < 0).all(axis=1) if sign_rule else True
    out[(mean > t * se) & positive] = 0
    out[(mean < -t * se) & negative] = 1
    return out


def agreement(delta: float, replicates: int, draws: int = DRAWS, sign_rule: bool = True) -> float:
    """P(two independent runs at R replicates give the same verdict)."""
    return sum(p * p for p in outcome_probabilities(delta, replicates, draws, sign_rule=sign_rule).values())


def replicates_needed(delta: float, target: float = TARGET, max_r: int = MAX_R, sign_rule: bool = True) -> int | None:
    """The smallest R in 3..max_r whose agreement reaches ``target``; None if none does. Agreement
    is not monotone in R: it dips where a decided verdict becomes about as likely as not, and with
    the sign rule P(every replicate > 0) = Phi(delta)^R falls with R, so a real effect of a few
    sigma drifts back to inconclusive as R grows."""
    for r in range(3, max_r + 1):
        if agreement(delta, r, sign_rule=sign_rule) >= target:
            return r
    return None


def pooled(measured: list[str], where: str) -> dict:
    """mu, sigma, delta and the pooled replicate count from the runs' 'measured' cells."""
    fx = [vd.effect_from_text(m, f"{where}, run {i}") for i, m in enumerate(measured)]
    df = sum(r - 1 for _, _, r in fx)
    if df < 1:
        raise ReproError(f"{where}: no run has 2 or more replicates; sigma cannot be estimated")
    mu = sum(m * r for m, _, r in fx) / sum(r for _, _, r in fx)
    sigma = math.sqrt(sum((r - 1) * (se * math.sqrt(r)) ** 2 for _, se, r in fx) / df)
    if sigma == 0:
        raise ReproError(f"{where}: zero spread in every run; delta is undefined")
    return {"mu": mu, "sigma": sigma, "delta": mu / sigma, "pooled_replicates": sum(r for _, _, r in fx),
            "replicates_now": fx[0][2]}


def predict(stability: dict, rs: tuple[int, ...] = DEFAULT_R) -> dict:
    """One row per claim of a verdict_stability JSON: pooled delta, predicted agreement at each R,
    and R needed for TARGET; with totals (expected claims that agree) per R."""
    rows = []
    for row in stability.get("rows", []):
        where = f"{row.get('experiment')} / {row.get('model')} / {row.get('claim')}"
        if len(row.get("measured", [])) < 1:
            raise ReproError(f"{where}: no measured cells")
        est = pooled(row["measured"], where)
        rows.append({k: row.get(k) for k in ("experiment", "model", "claim", "verdicts", "agree")}
                    | est | {"agreement": {str(r): agreement(est["delta"], r) for r in rs},
                             "replicates_needed": replicates_needed(est["delta"]),
                             "without_sign_rule": {
                                 "agreement": {str(r): agreement(est["delta"], r, sign_rule=False) for r in rs},
                                 "replicates_needed": replicates_needed(est["delta"], sign_rule=False)}})
    if not rows:
        raise ReproError("no claim rows in the verdict-stability JSON")
    now = sum(agreement(r["delta"], r["replicates_now"]) for r in rows)
    totals = {str(r): sum(x["agreement"][str(r)] for x in rows) for r in rs}
    no_sign = {str(r): sum(x["without_sign_rule"]["agreement"][str(r)] for x in rows) for r in rs}
    return {"rows": rows, "expected_agree": {"now": now, **totals}, "expected_agree_without_sign_rule": no_sign,
            "claims": len(rows),
            "measured_agree": stability.get("agree"), "target": TARGET, "draws": DRAWS}


def _need(r: int | None) -> str:
    return str(r) if r else "—"


def markdown(pred: dict, source: str) -> str:
    rs = [k for k in pred["expected_agree"] if k != "now"]
    exp, nos = pred["expected_agree"], pred["expected_agree_without_sign_rule"]
    lines = [
        "# How many replicates would each claim need? (tools/verdict_power.py)", "",
        f"Predicted on {datetime.now(timezone.utc).strftime('%Y-%m-%d')} from `{source}` "
        f"(its runs' effect means and SEs pooled per claim). Under e_r ~ Normal(mu, sigma) the rule "
        "of report/verdict.py depends on delta = mu / sigma and R only; the chance that two independent "
        f"runs agree is P(holds)² + P(does not hold)² + P(inconclusive)², by simulation ({pred['draws']} "
        f"draws). \"R for {pred['target']:.0%}\" is the smallest R with at least that chance (— : none up "
        f"to {MAX_R}). \"t only\" is the same rule without \"every replicate agrees in sign\" (at R = 2 "
        "and 3 the t interval already implies it). delta comes from a few replicates, so read the "
        "columns as a plan.", "",
        f"**Expected agreement now: {exp['now']:.1f} of {pred['claims']} claims** "
        f"(measured: {pred['measured_agree']}). At R = " + ", ".join(f"{r}: {exp[r]:.1f}" for r in rs)
        + "; t only: " + ", ".join(f"{r}: {nos[r]:.1f}" for r in rs) + ".", "",
        "| experiment | model | claim | verdicts | delta | R now | "
        + " | ".join(f"agree at R = {r}" for r in rs) + f" | R for {pred['target']:.0%} | t only: "
        + " | t only: ".join(f"agree at R = {r}" for r in rs[1:]) + f" | t only: R for {pred['target']:.0%} |",
        "|---|---|---|---|---|---|" + "---|" * (2 * len(rs) + 1)]
    for r in pred["rows"]:
        ns = r["without_sign_rule"]
        lines.append(f"| {r['experiment']} | {r['model']} | {r['claim']} | {' / '.join(r['verdicts'] or [])} | "
                     f"{r['delta']:.2f} | {r['replicates_now']} | "
                     + " | ".join(f"{r['agreement'][k]:.2f}" for k in rs) + f" | {_need(r['replicates_needed'])} | "
                     + " | ".join(f"{ns['agreement'][k]:.2f}" for k in rs[1:]) + f" | {_need(ns['replicates_needed'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stability", type=Path, help="a tools/verdict_stability.py JSON (docs/verdict_stability.json)")
    p.add_argument("--out", type=Path, help="markdown output (JSON beside it); default: print only")
    p.add_argument("--replicates", type=int, nargs="+", default=list(DEFAULT_R))
    a = p.parse_args(argv)
    try:
        stability = json.loads(a.stability.read_text())
        pred = predict(stability, tuple(a.replicates))
    except (OSError, json.JSONDecodeError, ReproError) as exc:
        sys.exit(f"error: {a.stability}: {exc}")
    src = a.stability.resolve()
    text = markdown(pred, str(src.relative_to(ROOT) if src.is_relative_to(ROOT) else src))
    print(text)
    if a.out:
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(pred, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
