"""Toy STAR reports: the tidy table, the figures and the claims, from the points' metrics JSONs
(``evaluate``: FID, precision, recall with the composition evaluator) and scores JSONs
(``star-scores``: CLIP score, per-category FID). Every point's sampler tags (``pos``, ``steps``,
``method``, ``cfg``, ``beta``, ``lam``) come from the samples' ``meta_json``.

Figures: CLIP score vs FID over the CFG scale and over λ for CCA; per-category FID bars; the RoPE
ablation (FID and CLIP score over fine-tuning steps after the resolution step, normalized RoPE vs
learned absolute embeddings); a sample grid with the prompts.
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import numpy as np

from guidance_repro.data.fashion_mnist import CAPTION_NAMES
from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, read_timing

COLUMNS = ["point", "pos", "steps", "method", "cfg", "beta", "lam", "replicate", "fid", "precision", "recall",
           "clip_score", "category_fid_mean", "num_samples", "seconds_per_image"]
CAT_COLUMNS = [f"fid_{c}" for c in CAPTION_NAMES]
# the floor points (star-floor): real train images and their tokenizer reconstructions
FLOOR_METHODS = ("data", "reconstruction")


def _read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReproError(f"{path}: unreadable JSON ({exc})") from None


def build_table(metrics: list[str], scores: list[str]) -> list[dict]:
    by_stem = {Path(s).stem: s for s in scores}
    rows = []
    for m in metrics:
        stem = Path(m).stem
        if stem not in by_stem:
            raise ReproError(f"{m}: no scores file for point {stem}")
        mj, sj = _read(Path(m)), _read(Path(by_stem[stem]))
        meta = mj.get("protocol", {}).get("sampler", {})
        row = {"point": stem, "pos": meta.get("pos", ""), "steps": int(float(meta.get("steps", 0))),
               "method": meta.get("method", ""), "cfg": float(meta.get("cfg", 0.0)),
               "beta": meta.get("beta", ""), "lam": meta.get("lam", ""),
               "replicate": int(meta.get("replicate", 0)), "fid": mj.get("fid"),
               "precision": mj.get("precision", ""), "recall": mj.get("recall", ""),
               "clip_score": sj["clip_score"], "category_fid_mean": sj["category_fid_mean"],
               "num_samples": mj["protocol"]["num_samples"], "seconds_per_image": read_timing(m).get("seconds_per_image", "")}
        row.update({f"fid_{k}": "" if v["fid"] is None else v["fid"] for k, v in sj["category_fid"].items()})
        rows.append(row)
    return rows


def write_table(rows: list[dict], out: str | Path) -> None:
    with atomic_path(out, suffix=".tmp.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS + CAT_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in COLUMNS + CAT_COLUMNS})


def read_table(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ReproError(f"{path}: empty STAR table")
    for r in rows:
        for k in COLUMNS[4:] + CAT_COLUMNS:
            r[k] = float(r[k]) if r.get(k) not in (None, "") else math.nan
        r["steps"], r["replicate"] = int(r["steps"]), int(r["replicate"])
    return rows


def sweep_rows(rows: list[dict]) -> list[dict]:
    """Replicate 0 (the configured run) less the floors: what the figures show, single seed."""
    return [r for r in rows if r["replicate"] == 0 and r["method"] not in FLOOR_METHODS]


def main_steps(rows: list[dict]) -> int:
    """The fine-tuning length of the main model (the longest RoPE fine-tune)."""
    return max(r["steps"] for r in rows if r["pos"] == "rope")


def _cfg_rows(rows, steps):
    return sorted((r for r in rows if r["pos"] == "rope" and r["steps"] == steps and r["method"] in ("pretrained", "cfg")),
                  key=lambda r: r["cfg"])


def _cca_rows(rows):
    return sorted((r for r in rows if r["method"] == "cca"), key=lambda r: r["lam"])


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out) -> None:
    with atomic_path(out, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _plt().close(fig)


def figure_clip_fid(rows: list[dict], out: str | Path) -> None:
    plt = _plt()
    n = main_steps(rows)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    cfg = _cfg_rows(rows, n)
    ax.plot([r["clip_score"] for r in cfg], [r["fid"] for r in cfg], "o-", label="CFG (over its scale)")
    for r in cfg:
        ax.annotate(f"cfg {r['cfg']:g}", (r["clip_score"], r["fid"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    cca = _cca_rows(rows)
    if cca:
        ax.plot([r["clip_score"] for r in cca], [r["fid"] for r in cca], "s--", label="CCA, no guidance (over λ)")
        for r in cca:
            ax.annotate(f"λ {r['lam']:g}", (r["clip_score"], r["fid"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("CLIP score (raw cosine, judge CLIP) →")
    ax.set_ylabel("FID (composition evaluator) ↓")
    ax.set_title(f"toy STAR (RoPE, fine-tuned {n} steps at 32 px; sweep single seed)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def figure_category(rows: list[dict], out: str | Path) -> None:
    plt = _plt()
    n = main_steps(rows)
    cfg = _cfg_rows(rows, n)
    picks = [("no guidance", cfg[0])]
    guided = [r for r in cfg if r["cfg"] > 0]
    if guided:
        best = min(guided, key=lambda r: r["fid"])
        picks.append((f"CFG {best['cfg']:g}", best))
    cca = _cca_rows(rows)
    if cca:
        best = min(cca, key=lambda r: r["fid"])
        picks.append((f"CCA λ {best['lam']:g}", best))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(CAPTION_NAMES))
    w = 0.8 / len(picks)
    for i, (name, r) in enumerate(picks):
        ax.bar(x + (i - (len(picks) - 1) / 2) * w, [r[f"fid_{c}"] for c in CAPTION_NAMES], w, label=name)
    ax.set_xticks(x, CAPTION_NAMES, rotation=30, fontsize=8)
    ax.set_ylabel("FID per category ↓")
    ax.set_title("per-category FID (category = first item's class; cf. MJHQ's ten categories)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def figure_rope(rows: list[dict], out: str | Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    n = main_steps(rows)
    ref = [r for r in rows if r["pos"] == "absolute"]
    if not ref:
        raise ReproError("STAR table: no absolute-position (ablation) points")
    g = ref[0]["cfg"]
    for pos, style in (("rope", "o-"), ("absolute", "s--")):
        pts = sorted((r for r in rows if r["pos"] == pos and r["method"] in ("pretrained", "cfg") and r["cfg"] == g),
                     key=lambda r: r["steps"])
        label = "normalized 2-D RoPE (STAR)" if pos == "rope" else "learned absolute PE (VAR-style)"
        for ax, key in zip(axes, ("fid", "clip_score")):
            ax.plot([r["steps"] for r in pts], [r[key] for r in pts], style, label=label)
    axes[0].set_ylabel("FID ↓")
    axes[1].set_ylabel("CLIP score →")
    for ax in axes:
        ax.set_xlabel("fine-tuning steps at 32 px", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"resolution step 16 → 32 px, cfg {g:g} (0 steps = the 16 px model zero-shot; main: {n};"
                 " single seed: the claim's replicates are in claims.md)",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def sample_grid(files: list[str], titles: list[str], out: str | Path, n: int = 6) -> None:
    from guidance_repro.data import samples as samples_io
    plt = _plt()
    if len(files) != len(titles):
        raise ReproError("--titles: one title per samples file")
    data = [samples_io.read(f) for f in files]
    fig, axes = plt.subplots(len(files), n, figsize=(1.7 * n, 1.9 * len(files) + 0.6), squeeze=False)
    for i, (s, t) in enumerate(zip(data, titles)):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(s.images[j], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(textwrap.fill(str(s.captions[j]), 26), fontsize=5)
        axes[i, 0].set_ylabel(t, fontsize=7)
    fig.tight_layout()
    _save(fig, out)
