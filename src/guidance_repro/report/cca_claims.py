"""The CCA claims of both AR families (LlamaGen, VAR), each decided over replicate re-trainings by
the one rule of report/verdict.py.

Input, per family, per model, per replicate: the metrics of that replicate's claim points
(``group_points``; each point a ``cca_figures.row_from_metrics`` row with its ``replicate`` and
seeds from the sampler tags ``replicate``, ``train_seed``, and the sampler's own ``seed``):

- ``pretrained``: the guidance-free point of the pretrained model (exactly one);
- ``cca``: the guidance-free point of the fine-tune at the config's main beta/lambda, fixed a priori
  (exactly one; never the min over a sweep, which would favour whichever replicate got lucky);
- ``cfg``: the CFG points of that replicate's own (small) sweep of the scale; the claim takes each
  replicate's best (what the paper compares against: the best CFG FID).

Claims (per family and model; e_r the effect of replicate r, positive = the paper's direction):

- "CCA lowers the guidance-free FID": e_r = FID(pretrained)_r - FID(CCA)_r;
- "guidance-free CCA matches the best CFG FID": e_r = min_s FID(CFG at s)_r - FID(CCA)_r
  (holds when CCA is at least as good on every replicate and clear of the spread; a tie within
  the spread is inconclusive);
- "guidance-free sampling costs about half of CFG" (one per benchmark): the benchmark's passes
  (taken in turns) are the replicates, e_k = time(CFG)_k / time(guidance-free)_k - 1.7.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.report import verdict as vd
from guidance_repro.report.cca_figures import row_from_metrics

COST_THRESHOLD = 1.7
CLAIM_POINT_METHODS = ("pretrained", "cca", "cfg")
LOWERS = "CCA lowers the guidance-free FID"
MATCHES = "guidance-free CCA matches the best CFG FID"
COST = "guidance-free sampling costs about half of CFG"


def replicate_of(metrics: dict, where: str) -> dict:
    """The replicate and seeds of one metrics JSON (its ``protocol.sampler`` tags): replicate 0
    (the configured run) when untagged."""
    s = metrics.get("protocol", {}).get("sampler", {})
    try:
        rep = int(s.get("replicate", 0))
        seeds = {k: int(s[k]) for k in ("seed", "train_seed") if s.get(k) not in (None, "")}
    except (TypeError, ValueError):
        raise ReproError(f"{where}: sampler tags replicate / seed / train_seed must be integers") from None
    if rep < 0:
        raise ReproError(f"{where}: replicate {rep} < 0")
    return {"replicate": rep, **{("sampling_seed" if k == "seed" else k): v for k, v in seeds.items()}}


def point_from_metrics(path: str | Path) -> dict:
    """One claim point: its table row (``row_from_metrics``), replicate, seeds and source file."""
    row = row_from_metrics(path)  # checks the file and its tags first
    return {**row, **replicate_of(json.loads(Path(path).read_text()), str(path)), "source": str(path)}


def read_json(path: str | Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReproError(f"{path}: not a readable {what} JSON ({exc})") from None


def group_points(points: list[dict]) -> dict:
    """Claim points (rows with ``replicate``) -> {family: {model: {replicate: {"pretrained": row,
    "cca": row, "cfg": [rows]}}}}. A second pretrained or CCA point in one replicate, or a method
    that is no claim point, is an error: the claim points are fixed a priori, one per replicate."""
    out: dict = {}
    for p in points:
        where = p.get("source", f"{p['family']}/{p['model']} replicate {p['replicate']}")
        if p["method"] not in CLAIM_POINT_METHODS:
            raise ReproError(f"{where}: method {p['method']!r} is not a claim point "
                             f"({', '.join(CLAIM_POINT_METHODS)})")
        if math.isnan(p["fid"]):
            raise ReproError(f"{where}: claim point without an FID")
        rep = out.setdefault(p["family"], {}).setdefault(p["model"], {}).setdefault(
            p["replicate"], {"cfg": []})
        if p["method"] == "cfg":
            rep["cfg"].append(p)
        elif p["method"] in rep:
            raise ReproError(f"{where}: a second {p['method']} point in replicate {p['replicate']} of "
                             f"{p['family']}/{p['model']} (the claim point is fixed a priori: one per replicate)")
        else:
            rep[p["method"]] = p
    return out


def _sides(replicates: dict, roles: tuple[str, ...], where: str) -> list[int]:
    """The replicates that have every role; an error if some replicates have it and others not
    (the sides of a paired claim must come from the same replicates)."""
    have = [r for r, pts in sorted(replicates.items()) if all(pts.get(k) for k in roles)]
    partial = [r for r, pts in sorted(replicates.items()) if any(pts.get(k) for k in roles) and r not in have]
    if have and partial:
        raise ReproError(f"{where}: replicate(s) {partial} lack one of the points {list(roles)} that "
                         f"replicate(s) {have} have")
    return have


def _best_cfg(pts: dict) -> dict:
    return min(pts["cfg"], key=lambda r: r["fid"])


def _seeds(replicates: dict, reps: list[int]) -> list[dict]:
    """Per replicate: the sampling seed and training seed of each claim point (recorded)."""
    out = []
    for r in reps:
        pts = replicates[r]
        entry = {"replicate": r}
        for role in ("pretrained", "cca"):
            if role in pts:
                entry[role] = {k: v for k, v in pts[role].items() if k in ("sampling_seed", "train_seed")}
        out.append(entry)
    return out


def _claim(family, model, claim, test, sides, result, **extra) -> dict:
    return {"family": family, "model": model, "claim": claim, "test": test,
            "measured": vd.measured_text(sides, result), "verdict": result["verdict"],
            "replicates": result["replicates"], "effects": result["effects"],
            "effect_mean": result["effect_mean"], "effect_se": result["effect_se"],
            "sides": {k: list(v) for k, v in sides.items()}, **extra}


def fid_claims(grouped: dict) -> list[dict]:
    """The two FID claims per family and model that has their points (see the module doc)."""
    out = []
    for fam, models in sorted(grouped.items()):
        for model, reps in sorted(models.items()):
            where = f"{fam}/{model}"
            lowers = _sides(reps, ("pretrained", "cca"), where)
            if lowers:
                base = [reps[r]["pretrained"]["fid"] for r in lowers]
                cca = [reps[r]["cca"]["fid"] for r in lowers]
                res = vd.paired(base, cca)
                out.append(_claim(fam, model, LOWERS,
                                  "per replicate: FID(no guidance) - FID(CCA at the main beta, lambda; "
                                  "fixed a priori), paired over the replicates' re-trainings",
                                  {"FID no guidance": base, "FID CCA": cca}, res,
                                  cca_point={"beta": reps[lowers[0]]["cca"]["beta"],
                                             "lam": reps[lowers[0]]["cca"]["lam"]},
                                  seeds=_seeds(reps, lowers)))
            matches = _sides(reps, ("cca", "cfg"), where)
            if matches:
                best = [_best_cfg(reps[r]) for r in matches]
                cfg = [b["fid"] for b in best]
                cca = [reps[r]["cca"]["fid"] for r in matches]
                res = vd.paired(cfg, cca)
                extra = {"best_cfg_scales": [b["cfg"] for b in best], "seeds": _seeds(reps, matches)}
                if all("pretrained" in reps[r] for r in matches):
                    # how much of the way from no guidance to the best CFG point CCA goes (the
                    # paper's models go 82-98 % of it): a number beside the verdict, not a second one
                    gaps = [(reps[r]["pretrained"]["fid"] - c, reps[r]["pretrained"]["fid"] - g)
                            for r, c, g in zip(matches, cca, cfg)]
                    if all(g > 0 for _, g in gaps):
                        extra["gap_closed_mean"] = vd.mean_sd([c / g for c, g in gaps])[0]
                scales = sorted({b["cfg"] for r in matches for b in reps[r]["cfg"]})
                out.append(_claim(fam, model, MATCHES,
                                  "per replicate: min FID(CFG over its own sweep of s = "
                                  f"{', '.join(f'{s:g}' for s in scales)}) - FID(CCA at the main beta, "
                                  "lambda), paired over the replicates' re-trainings",
                                  {"FID CCA": cca, "best FID CFG": cfg}, res, **extra))
    return out


def benchmark_ratios(benchmark: dict, where: str = "benchmark") -> list[float]:
    """time(CFG) / time(guidance-free) of every pass of a sampling benchmark (the passes are taken
    in turns, so pass k of both is one paired replicate). LlamaGen's benchmark keeps them under
    ``guidance_free`` / ``cfg``, VAR's under ``runs.guidance_free_cache`` / ``runs.cfg_cache``."""
    if "guidance_free" in benchmark and "cfg" in benchmark:
        free, cfg = benchmark["guidance_free"], benchmark["cfg"]
    else:
        runs = benchmark.get("runs", {})
        free, cfg = runs.get("guidance_free_cache"), runs.get("cfg_cache")
    if not free or not cfg or "seconds_all" not in free or "seconds_all" not in cfg:
        raise ReproError(f"{where}: no per-pass times (seconds_all) of guidance-free and CFG sampling")
    a, b = list(free["seconds_all"]), list(cfg["seconds_all"])
    if len(a) != len(b) or not a or min(a) <= 0:
        raise ReproError(f"{where}: {len(a)} guidance-free vs {len(b)} CFG passes (need as many, > 0 s)")
    return [c / f for f, c in zip(a, b)]


def cost_claim(benchmark: dict, where: str = "benchmark") -> dict:
    ratios = benchmark_ratios(benchmark, where)
    res = vd.decide([x - COST_THRESHOLD for x in ratios])
    return _claim(benchmark.get("family", ""), str(benchmark.get("model", "")), COST,
                  f"per benchmark pass (passes in turns): time(CFG) / time(guidance-free) - {COST_THRESHOLD}",
                  {"time ratio CFG / guidance-free": ratios}, res)


def floor_text(reconstruction: dict | None = None, evaluator: dict | None = None) -> str:
    """The slice's reachable floor beside its FIDs, from the run's own files: the tokenizer's
    reconstruction FID (test images through encode/decode) and the evaluator's train/test FID."""
    parts = []
    if reconstruction is not None:
        fid = reconstruction.get("fid")
        n = reconstruction.get("protocol", {}).get("num_samples")
        if fid is None:
            raise ReproError("reconstruction metrics without fid")
        parts.append(f"tokenizer reconstruction FID {float(fid):.4g}" + (f" ({n} test images)" if n else ""))
    if evaluator is not None:
        fid = evaluator.get("fid_train10k_vs_test")
        if fid is None:
            raise ReproError("evaluator quality without fid_train10k_vs_test")
        parts.append(f"evaluator train/test FID {float(fid):.3g} (10k vs 10k)")
    return "; ".join(parts)


def claims(points: list[dict], benchmarks: list[dict] | None = None, floor: str = "") -> dict:
    """All claims of a CCA slice: the FID claims from the replicate claim points, the cost claim
    of each benchmark; every claim carries ``floor``."""
    out = fid_claims(group_points(points))
    out += [cost_claim(b, f"benchmark {i}") for i, b in enumerate(benchmarks or [])]
    for c in out:
        c["floor"] = floor
    return {"claims": out, "rule": vd.RULE, "floor": floor}


def claims_rows(c: dict) -> list[dict]:
    """The claims as rows of the slice claims CSV (report/claims.py)."""
    return [{"experiment": f"cca-{x['family']}", "model": x["model"], "claim": x["claim"],
             "test": x["test"], "measured": x["measured"], "replicates": x["replicates"],
             "floor": x["floor"], "verdict": x["verdict"]} for x in c["claims"]]


def claims_markdown(c: dict) -> str:
    lines = ["| family | model | claim | measured (mean ± sd over R) | R | verdict |",
             "|---|---|---|---|---|---|"]
    for x in c["claims"]:
        lines.append(f"| {x['family']} | {x['model']} | {x['claim']} | {x['measured']} | "
                     f"{x['replicates']} | {x['verdict']} |")
    floor = f"\nFloor: {c['floor']}\n" if c.get("floor") else ""
    return "\n".join(lines) + f"\n\n{c['rule']}\n{floor}"
