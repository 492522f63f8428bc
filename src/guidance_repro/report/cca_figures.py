"""CCA reports for any model family (LlamaGen, VAR): the tidy table and the paper-style figures,
drawn from the metrics JSONs of the sampled points (the claims: report/cca_claims.py).

Each metrics JSON (``evaluate`` output) carries the sampler's ``meta_json`` under
``protocol.sampler``; its keys ``family``, ``model``, ``method`` (pretrained | cfg | cca | cca_cfg),
``cfg``, ``beta``, ``lam``, ``seconds_per_image`` identify the point. The table's ``cfg`` column is the
guidance scale of the point: CFG's s, or w for ``autoguidance`` (logits = guide + w·(main − guide),
a smaller, shorter-trained guide GPT; the cross-method matrix, beyond the paper). Figures, per family:

- Figure 1 style bars: per model, FID and IS without guidance, with CCA (guidance-free; the best
  CCA point of the model) and with CFG (the best CFG scale of the model);
- Figure 4 style FID–IS trade-off: CFG over its scale vs CCA over λ (one curve per β);
- the β ablation: FID and IS of CCA over β (one curve per λ);
- sample grids (``sample_grid``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, read_timing

COLUMNS = ["family", "model", "method", "cfg", "beta", "lam", "fid", "is_mean", "is_std",
           "precision", "recall", "num_samples", "seconds_per_image"]
# dpo, unlearning: Table 3 baselines; autoguidance: the cross-method matrix (beyond the paper)
METHODS = ("pretrained", "cfg", "cca", "cca_cfg", "dpo", "unlearning", "autoguidance")


def _num(v):
    if v is None or v == "":
        return float("nan")
    return float(v)


def row_from_metrics(path: str | Path) -> dict:
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReproError(f"{path}: not a readable metrics JSON ({exc})") from None
    s = m.get("protocol", {}).get("sampler", {})
    missing = [k for k in ("family", "model", "method") if k not in s]
    if missing or "fid" not in m:
        raise ReproError(f"{path}: metrics without fid or sampler tags {missing} (protocol.sampler)")
    if s["method"] not in METHODS:
        raise ReproError(f"{path}: method {s['method']!r} is not one of {', '.join(METHODS)}")
    scale = s.get("w") if s["method"] == "autoguidance" else s.get("cfg")
    return {"family": s["family"], "model": str(s["model"]), "method": s["method"],
            "cfg": _num(scale), "beta": _num(s.get("beta")), "lam": _num(s.get("lam")),
            "fid": _num(m.get("fid")), "is_mean": _num(m.get("is_mean")), "is_std": _num(m.get("is_std")),
            "precision": _num(m.get("precision")), "recall": _num(m.get("recall")),
            "num_samples": int(m["protocol"].get("num_samples", 0)),
            "seconds_per_image": _num(read_timing(path).get("seconds_per_image"))}


def write_table(rows: list[dict], path: str | Path) -> None:
    rows = sorted(rows, key=lambda r: (r["family"], r["model"], METHODS.index(r["method"]),
                                       _key(r["beta"]), _key(r["lam"]), _key(r["cfg"])))
    with atomic_path(path, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in COLUMNS})


def _key(v: float) -> float:
    return -1e300 if math.isnan(v) else v


def read_table(path: str | Path) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ReproError(f"{path}: cannot read the table ({exc})") from None
    if rows and set(COLUMNS) - set(rows[0]):
        raise ReproError(f"{path}: missing columns {sorted(set(COLUMNS) - set(rows[0]))}")
    out = []
    for r in rows:
        d = {k: r[k] for k in ("family", "model", "method")}
        d.update({k: _num(r[k]) for k in COLUMNS if k not in d})
        out.append(d)
    return out


def _model_order(rows):
    def depth(m):
        digits = "".join(c for c in m if c.isdigit())
        return (int(digits) if digits else 0, m)
    return sorted({r["model"] for r in rows}, key=depth)


def summary(rows: list[dict]) -> dict:
    """Per family and model: the guidance-free baseline, the best CCA point, the best CFG point."""
    out: dict = {}
    for fam in sorted({r["family"] for r in rows}):
        fr = [r for r in rows if r["family"] == fam]
        for model in _model_order(fr):
            mr = [r for r in fr if r["model"] == model]
            best = {}
            for method in METHODS:
                pts = [r for r in mr if r["method"] == method and not math.isnan(r["fid"])]
                if pts:
                    best[method] = min(pts, key=lambda r: r["fid"])
            out.setdefault(fam, {})[model] = best
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_bars(rows: list[dict], path: str | Path) -> None:
    plt = _plt()
    s = summary(rows)
    fams = list(s) or ["(none)"]
    fig, axes = plt.subplots(len(fams), 2, figsize=(10, 3.4 * len(fams)), squeeze=False)
    labels = [("pretrained", "w/o guidance", "#999999"), ("cca", "CCA (w/o guidance)", "#d62728"),
              ("cfg", "CFG", "#1f77b4")]
    for i, fam in enumerate(fams):
        models = list(s.get(fam, {}))
        x = np.arange(len(models))
        for j, metric in enumerate(("fid", "is_mean")):
            ax = axes[i, j]
            for k, (method, name, color) in enumerate(labels):
                vals = [s[fam][m][method][metric] if method in s[fam][m] else np.nan for m in models]
                bars = ax.bar(x + (k - 1) * 0.27, vals, 0.27, label=name, color=color)
                ax.bar_label(bars, fmt="%.1f", fontsize=7)
            ax.set_xticks(x, models)
            ax.set_title(f"{fam}: {'FID (lower is better)' if metric == 'fid' else 'IS'}, single seed")
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_tradeoff(rows: list[dict], path: str | Path) -> None:
    """FID vs IS (Figure 4 style): CFG over its scale from the guidance-free point, CCA over λ (per
    β), and CCA+CFG over the scale from its CCA point. Points are labelled with the family's own
    scale (LlamaGen's s starts at 1, VAR's cfg at 0) or λ."""
    plt = _plt()
    fams = sorted({r["family"] for r in rows}) or ["(none)"]
    fig, axes = plt.subplots(1, len(fams), figsize=(5.5 * len(fams), 4.2), squeeze=False)
    for i, fam in enumerate(fams):
        ax, fr = axes[0, i], [r for r in rows if r["family"] == fam]
        for model in _model_order(fr):
            mr = [r for r in fr if r["model"] == model]
            cfg = sorted([r for r in mr if r["method"] == "cfg"], key=lambda r: r["cfg"])
            base = [r for r in mr if r["method"] == "pretrained"]
            if len(cfg) >= 2:
                _curve(ax, base + cfg, "o-", f"{model} CFG (scale)", lambda r: f"{r['cfg']:g}")
            cca = [r for r in mr if r["method"] == "cca"]
            for beta in sorted({r["beta"] for r in cca}):
                pts = sorted([r for r in cca if r["beta"] == beta], key=lambda r: r["lam"])
                if len(pts) >= 2:
                    _curve(ax, pts, "s--", f"{model} CCA β={beta:g} (λ)", lambda r: f"λ{r['lam']:g}")
            both = [r for r in mr if r["method"] == "cca_cfg"]
            for beta, lam in sorted({(r["beta"], r["lam"]) for r in both}):
                start = [r for r in cca if (r["beta"], r["lam"]) == (beta, lam)]
                pts = start + sorted([r for r in both if (r["beta"], r["lam"]) == (beta, lam)],
                                     key=lambda r: r["cfg"])
                _curve(ax, pts, "^:", f"{model} CCA+CFG β={beta:g} λ={lam:g} (scale)",
                       lambda r: f"{r['cfg']:g}")
        ax.set_xlabel("IS")
        ax.set_ylabel("FID")
        ax.set_title(f"{fam}: FID–IS trade-off (single seed)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def _curve(ax, pts: list[dict], style: str, label: str, text) -> None:
    ax.plot([r["is_mean"] for r in pts], [r["fid"] for r in pts], style, label=label)
    for r in pts:
        ax.annotate(text(r), (r["is_mean"], r["fid"]), fontsize=6)


def plot_beta(rows: list[dict], path: str | Path) -> None:
    plt = _plt()
    fams = sorted({r["family"] for r in rows}) or ["(none)"]
    fig, axes = plt.subplots(len(fams), 2, figsize=(9, 3.4 * len(fams)), squeeze=False)
    for i, fam in enumerate(fams):
        cca = [r for r in rows if r["family"] == fam and r["method"] == "cca"]
        for model in _model_order(cca):
            for lam in sorted({r["lam"] for r in cca if r["model"] == model}):
                pts = sorted([r for r in cca if r["model"] == model and r["lam"] == lam], key=lambda r: r["beta"])
                if len(pts) < 2:
                    continue
                for j, metric in enumerate(("fid", "is_mean")):
                    axes[i, j].plot([r["beta"] for r in pts], [r[metric] for r in pts], "o-", label=f"{model} λ={lam:g}")
        for j, metric in enumerate(("FID", "IS")):
            axes[i, j].set_xscale("log")
            axes[i, j].set_xlabel("β")
            axes[i, j].set_title(f"{fam}: CCA {metric} over β (single seed)")
            if axes[i, j].get_legend_handles_labels()[0]:
                axes[i, j].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def sample_grid(paths: list[str], titles: list[str], out: str | Path, per_class: int = 4,
                num_classes: int = 10) -> None:
    """One row block per samples file: ``per_class`` images of each class, classes as columns."""
    from guidance_repro.data import samples as samples_io
    plt = _plt()
    fig, axes = plt.subplots(len(paths), 1, figsize=(num_classes * 0.6, len(paths) * per_class * 0.62 + 0.4),
                             squeeze=False)
    for ax, p, title in zip(axes[:, 0], paths, titles):
        s = samples_io.read(p)
        H, W, C = s.images.shape[1:]
        canvas = np.zeros((per_class * H, num_classes * W, C), np.uint8)
        for c in range(num_classes):
            idx = np.flatnonzero(s.labels == c)[:per_class]
            for r, k in enumerate(idx):
                canvas[r * H:(r + 1) * H, c * W:(c + 1) * W] = s.images[k]
        ax.imshow(canvas[..., 0] if C == 1 else canvas, cmap="gray" if C == 1 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    _save(fig, out)


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt
    with atomic_path(path, suffix=Path(path).suffix + ".tmp") as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
