"""The toy STAR claims, each decided by the one verdict rule (report/verdict.py) over replicates.

Replicate r of a claim is a re-training of the models it compares (the RoPE and absolute-PE chains
through the resolution step, the CCA fine-tune of the RoPE model) with its own training and
sampling seeds; the table's ``replicate`` column says which. Every claim point is fixed a priori
by the config (the resolution step's cfg, the largest CFG scale, the first CCA lambda), except
"the best CFG FID", which is the best of each replicate's own CFG sweep (every replicate samples
the whole small sweep, so the min is taken within the replicate, never across them).

The floor beside the FIDs comes from the table's two floor points (``star-floor``): the tokenizer's
reconstructions of real train images and the real images themselves, both against the eval
reference on the composition evaluator's features at the sample count of every point.
"""

from __future__ import annotations

from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path
from guidance_repro.report import claims as claims_table
from guidance_repro.report import verdict as vd
from guidance_repro.report.star_report import FLOOR_METHODS, main_steps

MODEL = "toy STAR (star.model), 16 -> 32 px"


def _one(rows: list[dict], **match) -> dict | None:
    """The row with every ``match`` value (cfg/lam compared as floats), or None."""
    hits = [r for r in rows if all(_same(r[k], v) for k, v in match.items())]
    if len(hits) > 1:
        raise ReproError(f"STAR table: {len(hits)} rows for {match}")
    return hits[0] if hits else None


def _same(a, b) -> bool:
    if isinstance(b, float):
        try:
            return float(a) == b
        except (TypeError, ValueError):
            return False
    if isinstance(b, tuple):
        return a in b
    return a == b


def _per_replicate(rows: list[dict], sides: dict) -> dict[str, list[float]]:
    """side name -> its values over the replicates that have every side (a side: a function of one
    replicate's rows returning a number, or None when that replicate lacks the point)."""
    out = {name: [] for name in sides}
    for rep in sorted({r["replicate"] for r in rows}):
        mine = [r for r in rows if r["replicate"] == rep]
        vals = {name: f(mine) for name, f in sides.items()}
        if all(v is not None for v in vals.values()):
            for name, v in vals.items():
                out[name].append(float(v))
    return out


def _value(key: str, **match):
    def get(rows):
        r = _one(rows, **match)
        return None if r is None else r[key]
    return get


def floor_text(rows: list[dict]) -> str:
    """The slice's reachable floor, read from the floor points of the run's own table."""
    rec = _one(rows, method="reconstruction", replicate=0)
    data = _one(rows, method="data", replicate=0)
    if rec is None or data is None:
        return ""
    return (f"tokenizer reconstruction FID {rec['fid']:.1f}; real train vs eval images FID "
            f"{data['fid']:.1f} (composition evaluator, {int(data['num_samples'])} images each)")


def _claim(experiment: str, claim: str, test: str, sides: dict[str, list[float]], higher: str,
           lower: str, floor: str) -> dict | None:
    if not sides[higher]:
        return None
    result = vd.paired(sides[higher], sides[lower])
    return {"experiment": experiment, "model": MODEL, "claim": claim, "test": test,
            "measured": vd.measured_text(sides, result), "replicates": result["replicates"],
            "floor": floor, "verdict": result["verdict"], "effects": result["effects"]}


def claims(rows: list[dict], claim_cfg: float, claim_lam: float) -> list[dict]:
    """The four claims, each with its verdict over the replicates that have all its points."""
    gen = [r for r in rows if r["method"] not in FLOOR_METHODS]
    if not gen:
        raise ReproError("STAR table: no generated points")
    n = main_steps(gen)
    absolute = [r for r in gen if r["pos"] == "absolute" and r["steps"] == n]
    g0 = float(absolute[0]["cfg"]) if absolute else None
    plain = ("pretrained", "cfg")
    floor = floor_text(rows)
    out = []
    if g0 is not None:
        sides = _per_replicate(gen, {
            "RoPE FID": _value("fid", pos="rope", steps=n, method=plain, cfg=g0),
            "absolute FID": _value("fid", pos="absolute", steps=n, method=plain, cfg=g0)})
        out.append(_claim("star-resolution", "normalized 2-D RoPE beats learned absolute PE after the "
                          "resolution step (16 -> 32 px, equal fine-tuning)",
                          f"FID(absolute) - FID(RoPE) > 0 after {n} fine-tuning steps, cfg {g0:g}, paired per "
                          "replicate (each replicate re-trains both chains)", sides, "absolute FID", "RoPE FID",
                          floor))
    guidance_free = _value("clip_score", pos="rope", steps=n, method="pretrained", cfg=0.0)
    if claim_cfg > 0:  # no CFG sweep (smoke config): no CFG claim
        sides = _per_replicate(gen, {
            f"CLIP cfg {claim_cfg:g}": _value("clip_score", pos="rope", steps=n, method="cfg", cfg=float(claim_cfg)),
            "CLIP cfg 0": guidance_free})
        out.append(_claim("star-cfg", "CFG (empty prompt as unconditional, VAR ramp) improves the CLIP score",
                          f"CLIP(cfg {claim_cfg:g}, fixed a priori: the sweep's largest) - CLIP(cfg 0) > 0",
                          sides, f"CLIP cfg {claim_cfg:g}", "CLIP cfg 0", floor))
    cca = {"method": "cca", "lam": float(claim_lam)}
    sides = _per_replicate(gen, {f"CLIP CCA λ {claim_lam:g}": _value("clip_score", **cca),
                                 "CLIP cfg 0": guidance_free})
    out.append(_claim("star-cca", "guidance-free CCA (captions rolled in the batch as negatives) raises the "
                      "CLIP score like CFG",
                      f"CLIP(CCA λ {claim_lam:g}, cfg 0; λ fixed a priori) - CLIP(no guidance) > 0",
                      sides, f"CLIP CCA λ {claim_lam:g}", "CLIP cfg 0", floor))

    def best_cfg_fid(mine):
        guided = [r["fid"] for r in mine if r["pos"] == "rope" and r["steps"] == n and r["method"] == "cfg"]
        return min(guided) if guided else None

    sides = _per_replicate(gen, {"best CFG FID": best_cfg_fid, f"CCA λ {claim_lam:g} FID": _value("fid", **cca)})
    out.append(_claim("star-cca", "guidance-free CCA matches the best CFG FID for text conditions",
                      f"min over cfg > 0 of FID(CFG) - FID(CCA λ {claim_lam:g}) > 0, the min within each "
                      "replicate's own CFG sweep", sides, "best CFG FID", f"CCA λ {claim_lam:g} FID", floor))
    out = [c for c in out if c is not None]
    if not out:
        raise ReproError("STAR table: no points for any claim")
    return out


def markdown(claims_rows: list[dict]) -> str:
    keys = ["experiment", "claim", "test", "measured", "replicates", "floor", "verdict"]
    lines = [f"Rule: {vd.RULE}.", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(c[k]).replace("|", "/") for k in keys) + " |" for c in claims_rows]
    return "\n".join(lines) + "\n"


def write_claims(rows: list[dict], csv_out: str | Path, md_out: str | Path, claim_cfg: float,
                 claim_lam: float) -> None:
    """claims.csv (the slice columns of report/claims.py) and claims.md from the table's rows."""
    cl = claims(rows, claim_cfg, claim_lam)
    claims_table.write_slice_csv(cl, csv_out)
    with atomic_path(md_out, suffix=".tmp.md") as tmp:
        Path(tmp).write_text(markdown(cl))
