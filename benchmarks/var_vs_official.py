"""Time our VAR sampler and VQVAE decoder against the official VAR code on the same weights; save JSON.

    python benchmarks/var_vs_official.py --official-root ~/src/VAR [--depth 16 --batch 4 --repeats 2]

``--official-root`` is a local clone of FoundationVision/VAR; its ``models`` package (and its
``dist.py``, which ``models/var.py`` imports) is imported from there at run time, nothing of it is
part of this repository. The official VAR-d{depth} and VQVAE (ch 160, V 4096, Cvae 32: the layout of
``vae_ch160v4096z32.pth``) are built with random weights (VAR's ``init_weights`` as its
``build_vae_var`` calls it) and their state dicts are loaded into ours through our official-file
loaders (var/official.py: the key names are the official ones by construction). Before timing, the
teacher-forced logits and the decoded images of both are compared (max abs differences recorded).

Rows, each side's passes taken in turns (sampling/bench_script.py ``interleaved_times``), same
labels, same seeds, top-k 900 and top-p 0.96 as the paper protocol:

- ``guidance_free``: ours samples the batch once (``Guidance("none")``, how a CCA model is
  sampled). ``autoregressive_infer_cfg`` has no guidance-free path: it always runs the doubled batch
  [cond; uncond], and at ``cfg=0`` its ramp t = cfg·si/(S−1) is 0 at every scale, so its logits
  (1+t)·c − t·u are the conditional half's: that is the official guidance-free sampler (VAR's
  ``--cfg=0.0``, cca.md §3), timed here.
- ``cfg1``, ``cfg4``: both doubled, the same ramp.
- ``vqvae_decode``: the same f̂ to an image, ours ``decode_fhat``, the official ``fhat_to_img``.

The sampling rows end with the VQVAE decode on both sides, as ``autoregressive_infer_cfg`` does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from pathlib import Path

import torch

from guidance_repro.allocator import tune_malloc
from guidance_repro.errors import ReproError
from guidance_repro.guidance.cfg import Guidance
from guidance_repro.io import write_json
from guidance_repro.sampling import next_scale as ns
from guidance_repro.sampling.bench_script import CLOCKS, add_timing_args, cpu_model, interleaved_times
from guidance_repro.var.model import SIZES
from guidance_repro.var.official import var_from_state, vqvae_from_state

ROWS = ("guidance_free", "cfg1", "cfg4", "vqvae_decode")
ROW_CFG = {"guidance_free": 0.0, "cfg1": 1.0, "cfg4": 4.0}


def import_official(root: str | Path):
    """The official ``models.var.VAR`` and ``models.vqvae.VQVAE`` classes of the clone at ``root``."""
    root = Path(root).expanduser().resolve()
    missing = [p for p in ("models/var.py", "models/vqvae.py", "dist.py") if not (root / p).is_file()]
    if missing:
        raise ReproError(f"--official-root: {root} is not a clone of FoundationVision/VAR "
                         f"(no {', '.join(missing)})")
    sys.path.insert(0, str(root))
    try:
        var_mod, vae_mod = importlib.import_module("models.var"), importlib.import_module("models.vqvae")
    except Exception as exc:  # an old or broken clone, or a missing dependency of the official code
        for name in [n for n in sys.modules if n in ("models", "dist") or n.startswith("models.")]:
            del sys.modules[name]  # a later --official-root must not find this clone's half-import
        raise ReproError(f"--official-root: importing models.var from {root} failed: {exc!r}") from None
    finally:
        sys.path.remove(str(root))
    if not Path(var_mod.__file__).resolve().is_relative_to(root):
        raise ReproError(f"--official-root: models.var came from {var_mod.__file__}, not from {root} "
                         f"(another 'models' package is on the path)")
    return var_mod.VAR, vae_mod.VQVAE


def build_pair(root, depth: int, seed: int):
    """(official VAR, official VQVAE, our VAR, our VQVAE) holding the same random weights."""
    OfficialVAR, OfficialVQVAE = import_official(root)
    size = SIZES[f"d{depth}"]
    torch.manual_seed(seed)
    vae = OfficialVQVAE(vocab_size=size["vocab_size"], z_channels=size["code_dim"], ch=160, test_mode=True,
                        share_quant_resi=4, v_patch_nums=size["patch_nums"])
    var = OfficialVAR(vae_local=vae, num_classes=size["num_classes"], depth=depth, embed_dim=64 * depth,
                      num_heads=depth, drop_path_rate=0.1 * depth / 24, norm_eps=1e-6, shared_aln=False,
                      cond_drop_rate=0.1, attn_l2_norm=True, patch_nums=size["patch_nums"])
    var.init_weights(init_adaln=0.5, init_adaln_gamma=1e-5, init_head=0.02, init_std=-1)
    var.eval()
    ours = var_from_state(var.state_dict(), f"official VAR-d{depth} (random weights)", expect_depth=depth)
    tok = vqvae_from_state(vae.state_dict(), "official VQVAE (random weights)", size["patch_nums"])
    return var, vae, ours, tok


@torch.no_grad()
def agreement(var, vae, ours, tok, batch: int, seed: int) -> dict:
    """Max abs differences of the teacher-forced logits and of the decoded images (same inputs)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, ours.cfg.num_classes, (batch,), generator=g)
    x_in = torch.randn(batch, ours.cfg.seq_len - 1, ours.cfg.code_dim, generator=g)
    G = tok.cfg.grid
    f_hat = torch.randn(batch, tok.cfg.code_dim, G, G, generator=g)
    drop, var.cond_drop_rate = var.cond_drop_rate, 0.0  # its forward drops labels even in eval mode
    try:
        logits = (var(labels, x_in) - ours(labels, x_in)).abs().max().item()
    finally:
        var.cond_drop_rate = drop
    image = (vae.fhat_to_img(f_hat.clone()) - tok.decode_fhat(f_hat)).abs().max().item()
    return {"teacher_forced_logits_max_abs_diff": logits, "decoded_image_max_abs_diff": image}


def runs_for(row: str, var, vae, ours, tok, labels: torch.Tensor, f_hat: torch.Tensor, args) -> dict:
    """{'ours': fn(r), 'official': fn(r)} of one row."""
    if row == "vqvae_decode":
        return {"ours": lambda r: tok.decode_fhat(f_hat),
                "official": lambda r: vae.fhat_to_img(f_hat.clone())}
    cfg = ROW_CFG[row]
    guidance = Guidance("none") if row == "guidance_free" else Guidance("cfg", cfg)
    sampler = ns.SamplerConfig(batch_size=len(labels), top_k=args.top_k, top_p=args.top_p)

    def ours_run(r):
        _, fh = ns.sample_batch(ours, tok, labels, guidance, sampler, torch.Generator().manual_seed(args.seed + r))
        with torch.no_grad():
            return tok.decode_fhat(fh)

    return {"ours": ours_run,
            "official": lambda r: var.autoregressive_infer_cfg(len(labels), labels, g_seed=args.seed + r, cfg=cfg,
                                                               top_k=args.top_k, top_p=args.top_p)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-root", required=True, help="a local clone of FoundationVision/VAR")
    ap.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    ap.add_argument("--top-k", type=int, default=900)
    ap.add_argument("--top-p", type=float, default=0.96)
    ap.add_argument("--goal", type=float, default=1.1, help="official / ours time wanted in every row")
    ap.add_argument("--out", default="docs/benchmarks/var_vs_official.json")
    add_timing_args(ap, repeats=2)
    args = ap.parse_args(argv)
    tune_malloc()  # as every command of the package does (both sides share this process)
    torch.set_num_threads(args.threads)
    var, vae, ours, tok = build_pair(args.official_root, args.depth, args.seed)
    checks = agreement(var, vae, ours, tok, 2, args.seed)
    print(checks, flush=True)
    labels = torch.from_numpy(ns.class_balanced_labels(args.batch, ours.cfg.num_classes, args.seed))
    G = tok.cfg.grid
    f_hat = torch.randn(args.batch, tok.cfg.code_dim, G, G, generator=torch.Generator().manual_seed(args.seed))
    runs, warmups = {}, []
    for row in args.rows:
        for side, fn in runs_for(row, var, vae, ours, tok, labels, f_hat, args).items():
            runs[f"{row}/{side}"] = fn
        # warm-up at one image: oneDNN's kernels and the allocator's pools, not a timed pass's cost
        warmups += runs_for(row, var, vae, ours, tok, labels[:1], f_hat[:1], args).values()
    with torch.no_grad():
        for fn in warmups:
            fn(0)
        times = interleaved_times(runs, args.repeats, clock=CLOCKS[args.clock])
    rows = {}
    for row in args.rows:
        o, f = times[f"{row}/ours"], times[f"{row}/official"]
        rows[row] = {"ours_seconds_best": min(o), "official_seconds_best": min(f), "ours_seconds_all": o,
                     "official_seconds_all": f, "official_over_ours_time": min(f) / min(o)}
        print(f"{row:14s} ours {min(o):8.2f} s  official {min(f):8.2f} s  speed-up {min(f) / min(o):.3f}x",
              flush=True)
    result = {
        "benchmark": "var_vs_official",
        "model": {"depth": args.depth, "params": sum(p.numel() for p in ours.parameters()),
                  "vqvae_params": sum(p.numel() for p in tok.parameters()), "weights": "random, shared",
                  "patch_nums": list(ours.cfg.patch_nums)},
        "batch": args.batch, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
        "repeats": args.repeats, "clock": args.clock, "goal_official_over_ours": args.goal,
        "official_guidance_free": "autoregressive_infer_cfg(cfg=0): the doubled batch, conditional logits",
        "agreement": checks, "rows": rows,
        "goal_met": all(r["official_over_ours_time"] >= args.goal for r in rows.values()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0], **cpu_model()},
    }
    write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
