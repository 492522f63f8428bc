"""The Fashion-MNIST autoguidance claims, decided over R replicates by report/verdict.py.

Replicate r re-trains every model a claim compares (main, CFG's unconditional guide, the guides of
the ablation) with its own seeds and samples them with its own sampling seed. The claims compare
the points at the weights fixed by the config (``image.claim_w``, chosen a priori: the best w of
earlier single-seed sweeps), the same w in every replicate, so no replicate's noise picks its own
point. Replicate 0's sweep over w stays single-seed (the figure and the Table 1 layout).
"""

from __future__ import annotations

import pandas as pd

from guidance_repro.errors import ReproError
from guidance_repro.report import verdict as vd

EXPERIMENT = "autoguidance-fmnist"
NOT_RUN = "not run (curve missing from the config)"


def curve_of(method: str, guide: str) -> str:
    """'none' (the unguided main model), 'cfg', or the guide's name (an autoguidance curve)."""
    return {"none": "none", "cfg": "cfg"}.get(method, guide)


def claim_table(df: pd.DataFrame, claim_w: dict) -> pd.DataFrame:
    """One row per (replicate, curve) at the curve's claim weight (``claim_w``: curve -> w)."""
    keep = []
    for _, r in df.iterrows():
        curve = curve_of(r["method"], r["guide"])
        if curve == "none" or (curve in claim_w and float(r["w"]) == float(claim_w[curve])):
            keep.append({**r.to_dict(), "curve": curve})
    t = pd.DataFrame(keep)
    if t.empty:
        raise ReproError("autoguidance claims: no sweep point at the claim weights (--claim-w)")
    dup = t[t.duplicated(["replicate", "curve"], keep=False)]
    if len(dup):
        raise ReproError(f"autoguidance claims: replicate {int(dup.iloc[0]['replicate'])} has "
                         f"{len(dup)} points of curve {dup.iloc[0]['curve']!r} at its claim weight")
    return t.sort_values(["replicate", "curve"]).reset_index(drop=True)


def values(t: pd.DataFrame, curve: str, column: str) -> list[float] | None:
    """``column`` of ``curve`` per replicate (replicate order); None when no replicate has it."""
    part = t[t.curve == curve]
    if part.empty:
        return None
    reps = sorted(int(r) for r in t.replicate.unique())
    have = sorted(int(r) for r in part.replicate)
    if have != reps:
        raise ReproError(f"autoguidance claims: curve {curve!r} sampled in replicates {have}, the "
                         f"experiment has {reps}: every replicate needs every claim point")
    return [float(v) for v in part.sort_values("replicate")[column]]


def floor_text(floor: dict) -> str:
    """The reachable floor beside the FIDs: real training images measured like a sweep point."""
    n = floor.get("protocol", {}).get("num_samples", "?")
    return (f"evaluator train/test FID {floor['fid']:.1f}, recall {floor['recall']:.3f} "
            f"({n} real training images vs the test reference)")


def claims(t: pd.DataFrame, claim_w: dict, floor: str) -> list[dict]:
    """The four claims of the image experiment, each with its verdict over the replicates."""
    def w_of(curve):
        return f"{claim_w[curve]:g}" if curve in claim_w else "?"

    fixed = (f"w fixed by config (claim_w; CFG w = {w_of('cfg')}, autoguidance w = "
             f"{w_of('autoguide')}), paired per replicate")
    fid = {c: values(t, c, "fid") for c in ("none", "cfg", "autoguide", "shorter", "smaller")}
    recall = {c: values(t, c, "recall") for c in ("cfg", "autoguide")}
    out = []

    def add(claim, test, sides, result):
        row = {"experiment": EXPERIMENT, "model": "main", "claim": claim, "test": f"{test}; {fixed}",
               "floor": floor}
        if result is None:
            out.append({**row, "measured": NOT_RUN, "replicates": "", "verdict": ""})
        else:
            out.append({**row, "measured": vd.measured_text(sides, result), "verdict": result["verdict"],
                        "replicates": result["replicates"], "effects": result["effects"]})

    ag, cfg, base = fid["autoguide"], fid["cfg"], fid["none"]
    add("autoguidance beats CFG in best FID", "e = FID(CFG) - FID(autoguidance)",
        {"autoguidance FID": ag, "CFG FID": cfg}, None if ag is None or cfg is None else vd.paired(cfg, ag))
    ra, rc = recall["autoguide"], recall["cfg"]
    add("autoguidance keeps variation better than CFG", "e = recall(autoguidance) - recall(CFG)",
        {"autoguidance recall": ra, "CFG recall": rc}, None if ra is None or rc is None else vd.paired(ra, rc))
    add("autoguidance improves on the unguided model", "e = FID(no guidance) - FID(autoguidance)",
        {"autoguidance FID": ag, "unguided FID": base},
        None if ag is None or base is None else vd.paired(base, ag))
    sh, sm = fid["shorter"], fid["smaller"]
    result = None
    if ag is not None and sh is not None and sm is not None:
        # a chain of two inequalities holds where its weaker link does
        result = vd.decide([min(b - a, c - b) for a, b, c in zip(ag, sh, sm)])
    add("ablation order (Table 1): both reductions <= shorter only <= smaller only",
        "e = min(FID(shorter) - FID(smaller+shorter), FID(smaller) - FID(shorter))",
        {"smaller+shorter": ag, "shorter": sh, "smaller": sm}, result)
    return out
