"""The image-level autoguidance report: a tidy table of every sweep point, FID vs w per method,
precision–recall at each method's best FID, sample grids and the Table 1-style ablation table, all
of replicate 0's single-seed sweep (the claims over every replicate: ``edm/claims.py``).

Each point is one metrics JSON of the shared ``evaluate`` command; what the point is (method,
guide, w, replicate, seeds) comes from its ``protocol.sampler`` block, written by
``autoguidance-sample-points``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from guidance_repro.errors import ReproError
from guidance_repro.io import read_json, read_timing

# guide name -> (row label of the paper's Table 1 layout, what is reduced)
ABLATION_ROWS = {
    "autoguide": "+ Autoguidance (smaller and shorter)",
    "shorter": "− reduce training only (same size, shorter)",
    "smaller": "− reduce capacity only (smaller, same length)",
}


def _per_image(seconds, n):
    return seconds / n if seconds and n else None


def collect(paths: list[str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        r = read_json(p)
        meta = r.get("protocol", {}).get("sampler")
        if not meta or "method" not in meta:
            raise ReproError(f"{p}: metrics without the sampler's method/guide/w (protocol.sampler)")
        n = r["protocol"].get("num_samples")
        rows.append({"method": meta["method"], "guide": meta.get("guide") or "", "w": float(meta["w"]),
                     "replicate": int(meta.get("replicate", 0)), "seed": meta.get("seed"),
                     "train_seeds": meta.get("train_seeds", {}), "fid": r.get("fid"), "precision": r.get("precision"), "recall": r.get("recall"),
                     "num_samples": n, "metrics_file": str(p),
                     # measured by the sampling job (samples meta): the matrix's sampling cost
                     "seconds_per_image": _per_image(read_timing(p).get("seconds"), n)})
    df = pd.DataFrame(rows)
    return df.sort_values(["replicate", "method", "guide", "w"]).reset_index(drop=True)


def sweep(df: pd.DataFrame) -> pd.DataFrame:
    """Replicate 0's points: the single-seed sweep of the tables and figures."""
    return df[df.replicate == 0].drop(columns=["replicate"]).reset_index(drop=True)


def series(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One curve per (method, guide); the unguided point (w = 1) starts every curve."""
    base = df[df.method == "none"]
    out = {}
    for (method, guide), part in df[df.method != "none"].groupby(["method", "guide"]):
        name = "CFG" if method == "cfg" else f"autoguidance ({guide})"
        out[name] = pd.concat([base, part]).sort_values("w")
    order = ["CFG"] + [f"autoguidance ({g})" for g in ABLATION_ROWS]
    return dict(sorted(out.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])))


def best(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"curve": name, **part.loc[part.fid.idxmin()].to_dict()} for name, part in series(df).items()]
    if len(df[df.method == "none"]):
        rows.insert(0, {"curve": "no guidance", **df[df.method == "none"].iloc[0].to_dict()})
    return pd.DataFrame(rows)


def ablation_markdown(b: pd.DataFrame) -> str:
    """Table 1's layout: FID and w per row (precision/recall added)."""
    lines = ["| Model / method | FID | w | precision | recall |", "|---|---|---|---|---|"]

    def row(label, r):
        return (f"| {label} | {r['fid']:.2f} | {r['w']:.2f} | {r['precision']:.3f} | "
                f"{r['recall']:.3f} |")

    get = {r["curve"]: r for _, r in b.iterrows()}
    if "no guidance" in get:
        lines.append(row("main model, no guidance", get["no guidance"]))
    if "CFG" in get:
        lines.append(row("+ CFG (unconditional guide)", get["CFG"]))
    for guide, label in ABLATION_ROWS.items():
        key = f"autoguidance ({guide})"
        if key in get:
            lines.append(row(label, get[key]))
    return "\n".join(lines) + "\n"


def fid_figure(df: pd.DataFrame, b: pd.DataFrame, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, part in series(df).items():
        ax.plot(part.w, part.fid, "o-", label=name)
    ax.set_xlabel("guidance weight w")
    ax.set_ylabel("FID (toy classifier features)")
    ax.set_title("FID vs w (w = 1: no guidance; single seed)")
    ax.legend(fontsize=8)
    for _, r in b.iterrows():
        ax2.scatter(r["recall"], r["precision"], s=40)
        ax2.annotate(f"{r['curve']} (w={r['w']:g})", (r["recall"], r["precision"]), fontsize=7,
                     xytext=(4, 4), textcoords="offset points")
    ax2.set_xlabel("recall")
    ax2.set_ylabel("precision")
    ax2.set_title("precision–recall at each method's best FID")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_figure(images: dict[str, np.ndarray], path, per_row: int = 10, rows: int = 4) -> None:
    """One block of ``rows × per_row`` samples per entry (name → uint8 (N, 28, 28, 1))."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 1.5 + 1.3 * rows / per_row * 3.2))
    axes = np.atleast_1d(axes)
    for ax, (name, imgs) in zip(axes, images.items()):
        k = min(len(imgs), per_row * rows)
        tiles = imgs[:k, :, :, 0]
        tiles = np.concatenate([tiles, np.zeros((per_row * rows - k, 28, 28), np.uint8)])
        grid = tiles.reshape(rows, per_row, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, per_row * 28)
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
