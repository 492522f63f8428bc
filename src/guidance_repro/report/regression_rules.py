"""Rule entries of the regression check: properties of mechanism metrics that hold at any seed.

Seed bands (report/regression.py) can only catch what moves a metric beyond the seed spread; a
mechanism metric (e.g. the KL between guided and conditional next-token distributions) is instead
tested against what the method guarantees. A rule of the expected file's ``mechanism`` list:

    {"files": "cca_llamagen/mechanism/*.json", "rule": "increasing",
     "keys": ["cfg_kl.s1", "cfg_kl.s1.5", "cfg_kl.s2"], "min_step": 0.05, "why": "..."}

is applied to every collected file matching ``files`` (at least one must exist). Rules:

- ``zero``: |v| <= ``tol`` for each key (e.g. KL at s = 1).
- ``positive``: v >= ``min`` for each key (e.g. the CCA margin rise).
- ``increasing``: each key's value exceeds the previous one by at least ``min_step`` times the
  largest |value| of the list (KL grows with the CFG scale).
- ``differ``: every pair of keys differs by at least ``min_rel`` times the larger |value| (two runs
  that differ only in λ: equal iff λ is ignored).
- ``proportional``: the values divided by ``factors`` agree within ``rel_tol`` and are above
  ``min`` (a distance linear in w − 1).
"""

from __future__ import annotations

import fnmatch
import math

from guidance_repro.errors import ReproError

RULES = ("zero", "positive", "increasing", "differ", "proportional")
_NEEDS = {"zero": ("tol",), "positive": ("min",), "increasing": ("min_step",), "differ": ("min_rel",),
          "proportional": ("factors", "rel_tol", "min")}


def validate_rules(rules, where: str) -> list[dict]:
    if not isinstance(rules, list):
        raise ReproError(f"{where}: 'mechanism' must be a list of rules")
    for i, r in enumerate(rules):
        key = f"{where}: mechanism[{i}]"
        if not isinstance(r, dict) or r.get("rule") not in RULES:
            raise ReproError(f"{key}.rule: must be one of {', '.join(RULES)}")
        if not isinstance(r.get("files"), str) or not isinstance(r.get("keys"), list) or not r["keys"]:
            raise ReproError(f"{key}: needs 'files' (a pattern) and a non-empty 'keys' list")
        for need in _NEEDS[r["rule"]]:
            if need not in r:
                raise ReproError(f"{key}.{need}: missing (rule {r['rule']})")
        if r["rule"] == "proportional" and len(r["factors"]) != len(r["keys"]):
            raise ReproError(f"{key}.factors: one factor per key needed")
    return rules


def _g(x: float) -> str:
    return f"{x:.6g}"


def _apply(rule: dict, values: list[float]) -> str:
    """'' when the rule holds for these values (in key order), else why not."""
    kind = rule["rule"]
    if not all(math.isfinite(v) for v in values):
        return f"not finite: {values}"
    if kind == "zero":
        bad = [v for v in values if abs(v) > rule["tol"]]
        return f"{_g(bad[0])} is not zero (|v| <= {_g(rule['tol'])})" if bad else ""
    if kind == "positive":
        bad = [v for v in values if v < rule["min"]]
        return f"{_g(bad[0])} < {_g(rule['min'])}" if bad else ""
    scale = max(abs(v) for v in values)
    if kind == "increasing":
        step = rule["min_step"] * scale
        for a, b in zip(values, values[1:]):
            if not b - a >= step or scale == 0:
                return f"does not grow: {_g(a)} -> {_g(b)} (each step >= {_g(step)} needed)"
        return ""
    if kind == "differ":
        for i, a in enumerate(values):
            for b in values[i + 1:]:
                if not abs(a - b) >= rule["min_rel"] * max(abs(a), abs(b)) or a == b:
                    return f"{_g(a)} and {_g(b)} do not differ (relative {_g(rule['min_rel'])} needed)"
        return ""
    ratios = [v / f for v, f in zip(values, rule["factors"])]
    lo, hi = min(ratios), max(ratios)
    if lo < rule["min"]:
        return f"value / factor {_g(lo)} < {_g(rule['min'])}"
    if hi - lo > rule["rel_tol"] * hi:
        return f"value / factor ranges {_g(lo)}..{_g(hi)}, not proportional (rel_tol {_g(rule['rel_tol'])})"
    return ""


def check_rules(metrics: dict[str, float], rules: list[dict]) -> tuple[list[str], list[str], set[str]]:
    """(failures, checked rule labels, metric names the rules looked at)."""
    files = sorted({name.split(":", 1)[0] for name in metrics})
    failures, checked, used = [], [], set()
    for rule in rules:
        matched = fnmatch.filter(files, rule["files"])
        label = f"{rule['files']}:{rule['rule']}({', '.join(rule['keys'])})"
        checked.append(label)
        if not matched:
            failures.append(f"{label}: no results file matches {rule['files']}")
            continue
        for f in matched:
            names = [f"{f}:{k}" for k in rule["keys"]]
            missing = [n for n in names if n not in metrics]
            if missing:
                failures.append(f"{missing[0]} is missing from the results (rule {rule['rule']})")
                continue
            used.update(names)
            why = _apply(rule, [metrics[n] for n in names])
            if why:
                failures.append(f"{f}: rule {rule['rule']} on {', '.join(rule['keys'])} fails: {why}"
                                + (f" ({rule['why']})" if rule.get("why") else ""))
    return failures, checked, used
