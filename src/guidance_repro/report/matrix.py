"""The cross-method matrix (beyond the papers): per model family, the best point of each guidance
method on the same toy models — guidance-free, CFG (best s), autoguidance (best w), CCA (best β, λ),
CCA+CFG (best s) — with FID, recall and sampling cost, in one table and one figure.

Inputs are the families' tidy tables: the CCA table of an AR family (``report/cca_figures``
columns; autoguidance rows carry w in ``cfg``), restricted to one model (the sweep model, where
every method was sampled), and the autoguidance points table of the diffusion family
(``edm/report``). A method a family cannot use, or that was not sampled, is a row marked n/a with
the reason.

Sampling cost: ``seconds_per_image`` measured by the sampling job (recorded in the samples file's
meta and copied into each metrics JSON), and the cost relative to the family's guidance-free point;
``passes`` is the number of network evaluations per token / denoiser step (CFG and autoguidance
run two networks; the autoguidance guide is smaller, so its second pass is cheaper).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path

METHODS = ["guidance-free", "CFG", "autoguidance", "CCA", "CCA+CFG"]
PASSES = {"guidance-free": 1, "CFG": 2, "autoguidance": 2, "CCA": 1, "CCA+CFG": 2}
COLUMNS = ["family", "model", "method", "point", "fid", "precision", "recall", "num_samples",
           "seconds_per_image", "relative_cost", "passes", "note"]
AR_METHOD = {"pretrained": "guidance-free", "cfg": "CFG", "autoguidance": "autoguidance",
             "cca": "CCA", "cca_cfg": "CCA+CFG"}
DIFFUSION_NA = "n/a: CCA fine-tunes an AR model's likelihood"


def _read_csv(path, required: set[str]) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
            fields = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReproError(f"{path}: cannot read the table ({exc})") from None
    if not rows:
        raise ReproError(f"{path}: empty table")
    if required - fields:
        raise ReproError(f"{path}: missing columns {sorted(required - fields)}")
    return rows


def _f(v) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _best(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if not math.isnan(r["fid"])]
    return min(ok, key=lambda r: r["fid"]) if ok else None


def ar_family(path, family: str, model: str, na: dict[str, str] | None = None) -> list[dict]:
    """Best point per method of one model of an AR family's CCA table."""
    rows = [r for r in _read_csv(path, {"model", "method", "cfg", "beta", "lam", "fid", "recall"})
            if r["model"] == model]
    if not rows:
        raise ReproError(f"{path}: no rows of model {model!r}")
    pts: dict[str, list[dict]] = {}
    for r in rows:
        m = AR_METHOD.get(r["method"])
        if m is None:
            continue
        if r["method"] == "cca_cfg" or r["method"] == "cfg" or r["method"] == "autoguidance":
            # the family's own scale: LlamaGen's s, VAR's cfg (its ramp), or autoguidance's w
            label = ("w" if r["method"] == "autoguidance" else "cfg") + f" = {_f(r['cfg']):g}"
        elif r["method"] == "cca":
            label = f"β = {_f(r['beta']):g}, λ = {_f(r['lam']):g}"
        else:
            label = "—"
        if r["method"] == "cca_cfg":
            label = f"β = {_f(r['beta']):g}, λ = {_f(r['lam']):g}, {label}"
        pts.setdefault(m, []).append(
            {"point": label, "fid": _f(r["fid"]), "precision": _f(r.get("precision")),
             "recall": _f(r["recall"]), "num_samples": r.get("num_samples", ""),
             "seconds_per_image": _f(r.get("seconds_per_image"))})
    return _rows(family, model, pts, na or {})


def diffusion_family(path, family: str, guide: str = "autoguide") -> list[dict]:
    """Best point per method of the autoguidance points table (the guide named ``guide``)."""
    rows = _read_csv(path, {"method", "guide", "w", "fid", "recall"})
    pts: dict[str, list[dict]] = {}
    for r in rows:
        if r["method"] == "autoguidance" and r["guide"] != guide:
            continue
        m = {"none": "guidance-free", "cfg": "CFG", "autoguidance": "autoguidance"}.get(r["method"])
        if m is None:
            continue
        pts.setdefault(m, []).append(
            {"point": "—" if m == "guidance-free" else f"w = {_f(r['w']):g}", "fid": _f(r["fid"]),
             "precision": _f(r.get("precision")), "recall": _f(r["recall"]),
             "num_samples": r.get("num_samples", ""),
             "seconds_per_image": _f(r.get("seconds_per_image"))})
    return _rows(family, "main", pts, {"CCA": DIFFUSION_NA, "CCA+CFG": DIFFUSION_NA})


def _rows(family, model, pts, na) -> list[dict]:
    base = _best(pts.get("guidance-free", []))
    base_t = base["seconds_per_image"] if base else math.nan
    out = []
    for m in METHODS:
        b = _best(pts.get(m, []))
        if b is None:
            out.append({"family": family, "model": model, "method": m, "point": "", "fid": math.nan,
                        "precision": math.nan, "recall": math.nan, "num_samples": "",
                        "seconds_per_image": math.nan, "relative_cost": math.nan, "passes": "",
                        "note": na.get(m, "n/a: not sampled in this run")})
            continue
        rel = b["seconds_per_image"] / base_t if base_t and not math.isnan(base_t) else math.nan
        out.append({"family": family, "model": model, "method": m, **b, "relative_cost": rel,
                    "passes": PASSES[m], "note": "best FID over the sweep" if len(pts[m]) > 1 else ""})
    return out


def _fmt(v, spec=".3g") -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, spec)
    return str(v)


def write_csv(rows: list[dict], path) -> None:
    with atomic_path(path, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in COLUMNS})


def markdown(rows: list[dict]) -> str:
    lines = ["# Cross-method matrix (beyond the papers)", "",
             "Per family, the best-FID point of each method on the same toy models (FID and recall on "
             "the toy classifier's features vs the Fashion-MNIST test split). Cost: seconds per image "
             "measured by each sampling job (meta of the samples file, copied into the metrics JSON; "
             "jobs share the cores with other jobs, so times are indicative) and relative to the "
             "family's guidance-free point; passes = network evaluations per token (AR) or per "
             "denoiser step (diffusion).", "",
             "| family | model | method | point | FID | recall | precision | s / image | rel. cost | passes | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["family"], r["model"], r["method"], r["point"], _fmt(r["fid"], ".1f"),
                 _fmt(r["recall"]), _fmt(r["precision"]), _fmt(r["seconds_per_image"], ".2e"),
                 _fmt(r["relative_cost"], ".2f"), r["passes"], r["note"]]
        lines.append("| " + " | ".join(str(c) or "—" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fams = list(dict.fromkeys(f"{r['family']} ({r['model']})" for r in rows))
    colors = ["#999999", "#1f77b4", "#2ca02c", "#d62728", "#9467bd"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    x = np.arange(len(fams))
    width = 0.16
    for j, (key, title) in enumerate([("fid", "FID (lower is better)"), ("recall", "recall (variation)"),
                                      ("relative_cost", "sampling time / guidance-free")]):
        ax = axes[j]
        for k, m in enumerate(METHODS):
            vals = []
            for fam in fams:
                r = next(r for r in rows if f"{r['family']} ({r['model']})" == fam and r["method"] == m)
                vals.append(r[key])
            bars = ax.bar(x + (k - 2) * width, vals, width, label=m, color=colors[k])
            ax.bar_label(bars, labels=[_fmt(v, ".2f" if key != "fid" else ".0f") for v in vals], fontsize=6)
        ax.set_xticks(x, fams, fontsize=8)
        ax.set_title(title)
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Cross-method matrix: best point of each method (missing bar = n/a, see matrix.md)",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_all(rows: list[dict], out_csv, out_md, out_fig, out_html=None) -> None:
    write_csv(rows, out_csv)
    md = markdown(rows)
    with atomic_path(out_md, suffix=".md.tmp") as tmp:
        tmp.write_text(md)
    figure(rows, out_fig)
    if out_html:
        from guidance_repro.report.claims import html_table
        shown = [{k: _fmt(v) for k, v in r.items()} for r in rows]
        with atomic_path(out_html, suffix=".html.tmp") as tmp:
            tmp.write_text(html_table(shown, COLUMNS, "Cross-method matrix",
                                      "Best FID point of each method per family; how cost is "
                                      "measured: results/matrix.md."))
    print(md)


def parse_spec(spec: str, key: str) -> tuple[str, str, Path]:
    """'FAMILY:MODEL=PATH' (or 'FAMILY=PATH') -> (family, model, path)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ReproError(f"{key}: expected FAMILY[:MODEL]=PATH, got {spec!r}")
    family, _, model = name.partition(":")
    return family, model, Path(path)
