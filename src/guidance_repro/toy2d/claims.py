"""The 2-D toy's Fig. 1 findings as claims, decided over R replicates by report/verdict.py.

Replicate r re-trains the three models (main, autoguidance guide, CFG's unconditional guide) with
its own seeds and draws every panel with its own sampling seed; the panel weights are the
config's (the paper's Fig. 1 settings), the same in every replicate. Per replicate the effect is
the difference of two panels' numbers in the claimed direction (branch counts, outlier shares).
The floor is the ground-truth panel's own figures (exact samples of the data): the reachable end
of both metrics.
"""

from __future__ import annotations

from guidance_repro.errors import ReproError
from guidance_repro.report import verdict as vd

EXPERIMENT = "autoguidance-toy2d"
BRANCHES = 127
# (claim, test, higher panel, lower panel, metric, margin): e = higher - lower + margin
CLAIMS = (
    ("autoguidance keeps the branches that CFG drops",
     "e = branches(autoguidance) - branches(CFG)", "autoguidance", "cfg", "branches_covered", 0),
    ("autoguidance keeps (almost) all branches of the unguided model",
     "e = branches(autoguidance) - branches(unguided) + 2", "autoguidance", "unguided",
     "branches_covered", 2),
    ("CFG cuts outliers vs unguided", "e = outliers(unguided) - outliers(CFG)", "unguided", "cfg",
     "outlier_share", 0),
    ("autoguidance cuts outliers vs unguided", "e = outliers(unguided) - outliers(autoguidance)",
     "unguided", "autoguidance", "outlier_share", 0),
    ("naive score scaling empties outer branches (coverage below unguided)",
     "e = branches(unguided) - branches(score scaling)", "unguided", "score_scaling",
     "branches_covered", 0),
)
LABEL = {"branches_covered": "branches", "outlier_share": "outliers"}


def floor_text(replicates: list[dict]) -> str:
    """The ground-truth panel's numbers (mean over the replicates)."""
    gt = [r["ground_truth"] for r in replicates]
    out = vd.spread([g["outlier_share"] * 100 for g in gt], 3)
    br = vd.spread([g["branches_covered"] for g in gt], 4)
    return f"ground truth (exact samples): outliers {out} %, branches {br}/{BRANCHES}"


def claims(replicates: list[dict], test_note: str = "") -> list[dict]:
    """Claims rows (slice CSV columns + per-replicate effects) from each replicate's panel metrics
    (replicate order: a list of {panel: panel_metrics})."""
    if not replicates:
        raise ReproError("autoguidance-toy2d: no replicate's panel metrics")
    floor = floor_text(replicates)
    out = []
    for claim, test, hi, lo, metric, margin in CLAIMS:
        try:
            a = [float(r[hi][metric]) for r in replicates]
            b = [float(r[lo][metric]) for r in replicates]
        except KeyError as exc:
            raise ReproError(f"autoguidance-toy2d: panel metrics without {exc}") from None
        scale = 100.0 if metric == "outlier_share" else 1.0  # outliers in percent
        a, b = [x * scale for x in a], [x * scale for x in b]
        result = vd.paired(a, b, margin=-margin)
        unit = " %" if metric == "outlier_share" else ""
        sides = {f"{hi} {LABEL[metric]}{unit}": a, f"{lo} {LABEL[metric]}{unit}": b}
        out.append({"experiment": EXPERIMENT, "model": "", "claim": claim,
                    "test": f"{test}{test_note}", "measured": vd.measured_text(sides, result),
                    "replicates": result["replicates"], "floor": floor, "verdict": result["verdict"],
                    "effects": result["effects"]})
    return out
