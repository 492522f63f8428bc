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
re-trainings: their rows are computed the same way. The "sign condition" columns are the rule
until 3b4f9a7 (holds also needed every replicate > 0), kept to show why it was dropped.

With ``--config``, each claim's R in that toy config (its slice's or model's ``replicates`` key,
else ``replicates.count``; the benchmark's ``repeats`` for the cost claims) and the agreement
predicted there: the plan of a config before its runs are measured.

    .venv/bin/python tools/verdict_power.py docs/verdict_stability.json --config config/config.yaml \
        --out docs/verdict_power.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from guidance_repro.errors import ReproError  # noqa: E402
from guidance_repro.report import verdict as vd  # noqa: E402

DEFAULT_R = (3, 5, 7, 10)
TARGET = 0.9      # "same verdict in two runs" probability that counts as reproducible
MAX_R = 30
DRAWS = 20000


def outcome_probabilities(delta: float, replicates: int, draws: int = DRAWS, seed: int = 0,
                          sign_rule: bool = False) -> dict:
    """P(holds), P(does not hold), P(inconclusive) of the rule at R replicates of Normal(delta, 1)
    effects, by simulation: the rule of vd.decide, vectorised (checked against it in the tests);
    ``sign_rule=True``: the rule until 3b4f9a7, which also needed every replicate to agree in sign."""
    if replicates < 2:
        return {vd.HOLDS: 0.0, vd.FAILS: 0.0, vd.INCONCLUSIVE: 1.0}
    e = np.random.default_rng(seed).normal(delta, 1.0, size=(draws, replicates))
    verdicts = vectorised_verdicts(e, sign_rule)
    return {o: float(np.mean(verdicts == i)) for i, o in enumerate(vd.OUTCOMES)}


def vectorised_verdicts(effects: np.ndarray, sign_rule: bool = False) -> np.ndarray:
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


def agreement(delta: float, replicates: int, draws: int = DRAWS, sign_rule: bool = False) -> float:
    """P(two independent runs at R replicates give the same verdict)."""
    return sum(p * p for p in outcome_probabilities(delta, replicates, draws, sign_rule=sign_rule).values())


def replicates_needed(delta: float, target: float = TARGET, max_r: int = MAX_R, sign_rule: bool = False) -> int | None:
    """The smallest R in 3..max_r whose agreement reaches ``target``; None if none does. Agreement
    is not monotone in R: it dips where a decided verdict becomes about as likely as not (a small
    real effect is inconclusive at small R and decided at large R), and with the sign condition
    P(every replicate > 0) = Phi(delta)^R falls with R, so a real effect of a few sigma drifts back
    to inconclusive as R grows."""
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


COST_CLAIM = "guidance-free sampling costs about half of CFG"
SLICE_OF_EXPERIMENT = {"cca-llamagen": ("cca_llamagen",), "cca-var": ("cca_var",),
                       "autoguidance-fmnist": ("autoguidance", "image"),
                       "autoguidance-toy2d": ("autoguidance", "toy"), "star-cca": ("star",),
                       "star-cfg": ("star",), "star-resolution": ("star",)}


def planned_replicates(cfg: dict, row: dict) -> int:
    """A claim's R in a toy config: the benchmark's repeats for a cost claim, else its model's /
    slice's ``replicates`` (cca_var: 1 for a depth outside replicate_depths), else replicates.count;
    0 for a LlamaGen model or VAR depth that the config does not run (the claim is not planned)."""
    where = f"{row.get('experiment')} / {row.get('model')} / {row.get('claim')}"
    path = SLICE_OF_EXPERIMENT.get(row.get("experiment"))
    if path is None:
        raise ReproError(f"{where}: no config slice known for experiment {row.get('experiment')!r}")
    section = cfg
    for key in path:
        section = (section or {}).get(key)
    if not isinstance(section, dict):
        raise ReproError(f"{where}: the config has no section {'.'.join(path)}")
    default = int(cfg.get("replicates", {}).get("count", 3))
    own = section  # where the claim's `replicates` key lives: the slice, or a LlamaGen model entry
    depth = None
    if path == ("cca_llamagen",):
        own = next((m for m in section.get("models", []) if m.get("name") == row.get("model")), None)
        if own is None:
            return 0
    elif path == ("cca_var",):
        depth = int(str(row.get("model")).lstrip("d"))
        if depth not in section.get("depths", [depth]):
            return 0
    if row.get("claim") == COST_CLAIM:
        return int(section.get("benchmark", {}).get("repeats", 5))
    if depth is not None and section.get("replicate_depths") is not None \
            and depth not in section["replicate_depths"]:
        return 1
    # as workflow/rules/common.smk's replicate_count: an absent or null key takes replicates.count
    n = own.get("replicates")
    return default if n is None else int(n)


def predict(stability: dict, rs: tuple[int, ...] = DEFAULT_R, plan: dict | None = None) -> dict:
    """One row per claim of a verdict_stability JSON: pooled delta, predicted agreement at each R,
    and R needed for TARGET; with totals (expected claims that agree) per R. ``plan``: a toy config
    whose R per claim (planned_replicates) gets its own column and total."""
    rows = []
    for row in stability.get("rows", []):
        where = f"{row.get('experiment')} / {row.get('model')} / {row.get('claim')}"
        if len(row.get("measured", [])) < 1:
            raise ReproError(f"{where}: no measured cells")
        est = pooled(row["measured"], where)
        d = est["delta"]
        out = ({k: row.get(k) for k in ("experiment", "model", "claim", "verdicts", "agree")}
               | est | {"agreement": {str(r): agreement(d, r) for r in rs},
                        "replicates_needed": replicates_needed(d),
                        "with_sign_rule": {
                            "agreement": {str(r): agreement(d, r, sign_rule=True) for r in rs},
                            "replicates_needed": replicates_needed(d, sign_rule=True)}})
        if plan is not None:
            r_plan = planned_replicates(plan, row)
            out["planned"] = {"replicates": r_plan, "agreement": agreement(d, r_plan) if r_plan else None}
        rows.append(out)
    if not rows:
        raise ReproError("no claim rows in the verdict-stability JSON")
    now = sum(agreement(r["delta"], r["replicates_now"]) for r in rows)
    now_sign = sum(agreement(r["delta"], r["replicates_now"], sign_rule=True) for r in rows)
    totals = {str(r): sum(x["agreement"][str(r)] for x in rows) for r in rs}
    sign = {str(r): sum(x["with_sign_rule"]["agreement"][str(r)] for x in rows) for r in rs}
    out = {"rows": rows, "expected_agree": {"now": now, **totals},
           "expected_agree_with_sign_rule": {"now": now_sign, **sign}, "claims": len(rows),
           "measured_agree": stability.get("agree"), "target": TARGET, "draws": DRAWS}
    if plan is not None:
        kept = [x for x in rows if x["planned"]["replicates"]]
        out["expected_agree_planned"] = sum(x["planned"]["agreement"] for x in kept)
        out["claims_planned"] = len(kept)
    return out


def _need(r: int | None) -> str:
    return str(r) if r else "—"


def markdown(pred: dict, source: str, plan_source: str | None = None) -> str:
    rs = [k for k in pred["expected_agree"] if k != "now"]
    exp, sgn = pred["expected_agree"], pred["expected_agree_with_sign_rule"]
    planned = "expected_agree_planned" in pred
    lines = [
        "# How many replicates would each claim need? (tools/verdict_power.py)", "",
        f"Predicted on {datetime.now(timezone.utc).strftime('%Y-%m-%d')} from `{source}` "
        f"(its runs' effect means and SEs pooled per claim). Under e_r ~ Normal(mu, sigma) the rule "
        "of report/verdict.py depends on delta = mu / sigma and R only; the chance that two independent "
        f"runs agree is P(holds)² + P(does not hold)² + P(inconclusive)², by simulation ({pred['draws']} "
        f"draws). \"R for {pred['target']:.0%}\" is the smallest R with at least that chance (— : none up "
        f"to {MAX_R}). \"sign condition\" is the rule until 3b4f9a7, which also needed every replicate "
        "to agree in sign (at R <= 4 the t interval implies it). delta comes from a few replicates, so "
        "read the columns as a plan.", "",
        f"**Expected agreement at the runs' R: {exp['now']:.1f} of {pred['claims']} claims** "
        f"(measured: {pred['measured_agree']}; {sgn['now']:.1f} with the sign condition). At R = "
        + ", ".join(f"{r}: {exp[r]:.1f}" for r in rs)
        + "; with the sign condition: " + ", ".join(f"{r}: {sgn[r]:.1f}" for r in rs) + "."]
    if planned:
        lines += ["", f"**Planned R of `{plan_source}`: {pred['expected_agree_planned']:.1f} of the "
                      f"{pred['claims_planned']} claims it runs expected to agree** (planned R 0: a model "
                      "or depth that config does not run)."]
    plan_head = " planned R | agree at planned R |" if planned else ""
    lines += ["",
              "| experiment | model | claim | verdicts | delta | R now |" + plan_head + " "
              + " | ".join(f"agree at R = {r}" for r in rs) + f" | R for {pred['target']:.0%} | sign condition: "
              + " | sign condition: ".join(f"agree at R = {r}" for r in rs[1:]) + " |",
              "|---|---|---|---|---|---|" + ("---|---|" if planned else "") + "---|" * (2 * len(rs))]
    for r in pred["rows"]:
        sg = r["with_sign_rule"]
        plan_cells = ""
        if planned:
            a = r["planned"]["agreement"]
            plan_cells = f" {r['planned']['replicates']} | {'—' if a is None else f'{a:.2f}'} |"
        lines.append(f"| {r['experiment']} | {r['model']} | {r['claim']} | {' / '.join(r['verdicts'] or [])} | "
                     f"{r['delta']:.2f} | {r['replicates_now']} |" + plan_cells + " "
                     + " | ".join(f"{r['agreement'][k]:.2f}" for k in rs) + f" | {_need(r['replicates_needed'])} | "
                     + " | ".join(f"{sg['agreement'][k]:.2f}" for k in rs[1:]) + " |")
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stability", type=Path, help="a tools/verdict_stability.py JSON (docs/verdict_stability.json)")
    p.add_argument("--out", type=Path, help="markdown output (JSON beside it); default: print only")
    p.add_argument("--replicates", type=int, nargs="+", default=list(DEFAULT_R))
    p.add_argument("--config", type=Path, help="a toy config whose R per claim to predict for")
    a = p.parse_args(argv)
    try:
        stability = json.loads(a.stability.read_text())
        plan = yaml.safe_load(a.config.read_text()) if a.config else None
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        sys.exit(f"error: {exc}")
    try:
        pred = predict(stability, tuple(a.replicates), plan)
    except ReproError as exc:
        sys.exit(f"error: {a.stability}{f' with {a.config}' if a.config else ''}: {exc}")
    text = markdown(pred, _shown(a.stability), _shown(a.config) if a.config else None)
    print(text)
    if a.out:
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(pred, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
