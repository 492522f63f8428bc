"""Paper-tier VAR commands: ``var-sample-shard`` (one resumable shard of a 50k point from the
official files; the generic ``merge-shards`` then makes the point's ADM batch) and
``var-mini-fixtures`` (the TEST STAND-IN VAR files of the mini tier, var/mini_fixtures.py).

    guidance-repro var-sample-shard --model var_d16.pth --depth 16 --vae vae_ch160v4096z32.pth \
        --num 50000 --num-shards 10 --shard 3 --cfg 0 --tag method=pretrained --tag model=d16 \
        --out results/.../shard_03.json          # chunks in results/.../shard_03.json.chunks/

The official protocol (cca.md §3, CCA ``VAR_sample.py``): 50 images per class, top-k 900,
top-p 0.96, ``more_smooth`` off, the CFG ramp t = cfg·si/(S − 1) with logits (1 + t)·c − t·u
(cfg 0: no guidance), fp16 autocast on the GPU as the official demo (``--dtype``; float32 on the
CPU), native 256 px, pixels = uint8((x + 1)/2·255) truncated, as VAR's demo. Without guidance one
batch runs (the official sampler always doubles it; recorded). Every image has its own seed
(sampling/shards.py; the official script seeds once).
"""

from __future__ import annotations

import argparse

from guidance_repro.errors import ReproError
from guidance_repro.sampling.cli_args import add_shard_args
from guidance_repro.io import json_object_arg

AUTOCAST = {"float16": "float16", "bfloat16": "bfloat16"}


def var_pixels(x):
    """Decoder output in [−1, 1] (B, 3, H, W) -> uint8 (B, H, W, 3) as VAR's demo: (x + 1)/2·255,
    truncated by the uint8 cast."""
    import torch
    return ((x.float().clamp(-1, 1) + 1) * 0.5 * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _load(args):
    import torch

    from guidance_repro.var.official import load_official_var, load_official_vqvae
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproError(f"--device {args.device}: no CUDA device on this machine")
    model = load_official_var(args.model, args.depth, json_object_arg(args.model_config, "--model-config"))
    vae = load_official_vqvae(args.vae, model.cfg.patch_nums)
    if (vae.cfg.codebook_size, vae.cfg.code_dim) != (model.cfg.vocab_size, model.cfg.code_dim):
        raise ReproError(f"--vae: {args.vae} has V {vae.cfg.codebook_size}, Cvae {vae.cfg.code_dim}; "
                         f"{args.model} needs {model.cfg.vocab_size}, {model.cfg.code_dim}")
    return model.to(args.device), vae.to(args.device)


def _sample_shard(args: argparse.Namespace) -> None:
    import contextlib

    import numpy as np
    import torch

    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.metrics.features import file_sha256
    from guidance_repro.sampling import next_scale
    from guidance_repro.sampling.ar import SamplerConfig
    from guidance_repro.sampling.shards import ShardPlan, image_seed, point_tags, run_shard
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tags = point_tags(args.tag, f"d{args.depth}", args.cfg, 0.0, "VAR: cfg 0 is no guidance")
    model, vae = _load(args)
    plan = ShardPlan(num=args.num, num_classes=model.cfg.num_classes, num_shards=args.num_shards,
                     shard=args.shard, chunk_size=args.chunk_size, seed=args.seed)
    guidance = Guidance("cfg", args.cfg) if args.cfg != 0.0 else Guidance("none")
    scfg = SamplerConfig(temperature=1.0, top_k=args.top_k, top_p=args.top_p, batch_size=args.batch_size)
    on_gpu = args.device.startswith("cuda")
    dtype = args.dtype if on_gpu else "float32"   # autocast on the GPU only, as the official demo
    L = model.cfg.seq_len

    def autocast():
        if dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=getattr(torch, AUTOCAST[dtype]))

    def draw(indices, labels):
        out = []
        for i in range(0, len(indices), scfg.batch_size):
            idx = indices[i:i + scfg.batch_size]
            uniforms = torch.stack([torch.rand(L, generator=torch.Generator().manual_seed(image_seed(args.seed, j)))
                                    for j in idx])
            lab = torch.from_numpy(labels[i:i + scfg.batch_size]).to(args.device)
            if guidance.doubled:  # [cond; uncond] only with CFG: guidance-free runs one batch
                lab = torch.cat([lab, torch.full_like(lab, model.null_class)])
            with torch.no_grad(), autocast():
                _, f_hat = next_scale.sample_scales(model, vae, model.class_emb(lab), len(idx), guidance,
                                                    scfg, None, uniforms=uniforms.to(args.device))
                out.append(var_pixels(vae.decode_fhat(f_hat)))
        return np.concatenate(out)

    settings = {
        "family": "var", "sampler": "next-scale (KV cache)", "model_file": str(args.model),
        "model_sha256": file_sha256(args.model), "vae_file": str(args.vae),
        "vae_sha256": file_sha256(args.vae), "depth": args.depth, "var_config": model.cfg.to_dict(),
        "image_size": vae.cfg.image_size, "pixels": "uint8((x + 1) / 2 * 255), truncated (VAR's demo)",
        "cfg": float(args.cfg), "cfg_convention": "VAR: t = cfg * si / (S - 1), logits = (1 + t) c - t u; cfg 0 is no guidance",
        "guidance": guidance.method, "forward_passes_per_scale": 2 if guidance.doubled else 1,
        "top_k": args.top_k, "top_p": args.top_p, "more_smooth": False, "temperature": 1.0,
        "batch_size": args.batch_size, "dtype": dtype, "device": args.device, "class_balanced": True, **tags,
        "differs_from_official": ["a seed per image (official: one seed for the run)",
                                  "no doubled batch without guidance (official: always doubled)"],
    }
    work = args.work or f"{args.out}.chunks"
    manifest = run_shard(plan, work, draw, settings, args.out, max_new_chunks=args.max_chunks or None,
                         progress=(lambda m: None) if args.no_progress else print)
    if manifest is not None:
        print(f"[var-sample-shard] shard {args.shard}/{args.num_shards}: {manifest['count']} images -> {args.out}")


def _fixtures(args: argparse.Namespace) -> None:
    from guidance_repro.var.mini_fixtures import write_var_fixtures
    manifest = write_var_fixtures(args.out, seed=args.seed, image_size=args.image_size)
    print(f"[var-mini-fixtures] TEST STAND-IN VAR files ({len(manifest['files'])}) -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("var-sample-shard",
                       help="one resumable shard of a paper-tier point from the official VAR files")
    p.add_argument("--model", required=True, help="official var_d*.pth (or a CCA fine-tune in that layout)")
    p.add_argument("--depth", type=int, required=True, choices=(16, 20, 24, 30, 36))
    p.add_argument("--vae", required=True, help="official vae_ch160v4096z32.pth")
    p.add_argument("--model-config", default="", help="JSON VARConfig overrides (tests' tiny files only)")
    p.add_argument("--cfg", type=float, default=0.0, help="VAR's --cfg (the ramp's end); 0 = no guidance")
    p.add_argument("--top-k", type=int, default=900)
    p.add_argument("--top-p", type=float, default=0.96)
    p.add_argument("--batch-size", type=int, default=25, help="images per batch (official: 25)")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16",
                   help="autocast on the GPU (official demo: float16); the CPU runs float32")
    p.add_argument("--device", default="cpu")
    add_shard_args(p)
    p.set_defaults(func=_sample_shard)

    p = sub.add_parser("var-mini-fixtures", help="TEST STAND-IN VAR + VQVAE files for the paper-shaped mini tier")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="side of the images (16 x the last scale)")
    p.set_defaults(func=_fixtures)
