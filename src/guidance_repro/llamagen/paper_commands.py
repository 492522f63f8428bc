"""Paper-tier sampling of the official LlamaGen files, one resumable shard per job:
``llamagen-sample-shard`` (then the generic ``merge-shards`` makes the point's ADM batch).

    guidance-repro llamagen-sample-shard --model c2i_XL_384.pt --size XL --tokenizer vq_ds16_c2i.pt \
        --num 50000 --num-shards 10 --shard 3 --seed 0 --cfg 1.75 --tag method=cfg --tag model=XL \
        --out results/.../shard_03.json          # chunks in results/.../shard_03.json.chunks/

The official protocol (cca.md §3, LlamaGen ``sample_c2i_ddp.py``): generation at 384 px (24x24
tokens), the decoder output resized bicubic to 256 *before* clamping, then clamp(127.5x + 128);
top-k and top-p off, temperature 1; CFG logits = u + s(c - u) (s = 1: no guidance, single batch).
Deliberate differences, recorded in the manifest: labels are class balanced (50 per class, as the
task's protocol asks; the official LlamaGen script draws them uniformly at random), every image has
its own seed (sampling/shards.py), and we sample in float32 eager unless ``--dtype`` / ``--compile``
say otherwise (the official script runs bf16 + torch.compile over a static cache).
``--gpt-config`` / ``--vq-config`` shrink the official configs for the tests' tiny official-layout
files (key names unchanged); the paper tier never sets them.
"""

from __future__ import annotations

import argparse

from guidance_repro.errors import ReproError
from guidance_repro.sampling.cli_args import add_shard_args
from guidance_repro.io import json_object_arg



def _load(args):
    import torch

    from guidance_repro.llamagen.official import load_official_gpt, load_official_vq
    from guidance_repro.llamagen.vq16 import VQ16Config
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproError(f"--device {args.device}: no CUDA device on this machine")
    gpt = load_official_gpt(args.model, size=args.size, image_size=args.image_size,
                            **json_object_arg(args.gpt_config, "--gpt-config"))
    vq_overrides = json_object_arg(args.vq_config, "--vq-config")
    vq_cfg = VQ16Config.from_dict({**vq_overrides, "image_size": args.image_size}) if vq_overrides else None
    tok = load_official_vq(args.tokenizer, image_size=args.image_size, out_size=args.eval_size, cfg=vq_cfg)
    if gpt.cfg.vocab_size != tok.cfg.codebook_size or gpt.cfg.grid != tok.cfg.grid:
        raise ReproError(f"--model: {args.model} has vocab {gpt.cfg.vocab_size} on a {gpt.cfg.grid}-grid, "
                         f"{args.tokenizer} {tok.cfg.codebook_size} codes on a {tok.cfg.grid}-grid")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    return gpt.to(args.device, dtype), tok.to(args.device)


def _sample_shard(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.metrics.features import file_sha256
    from guidance_repro.sampling import ar
    from guidance_repro.sampling.shards import ShardPlan, image_seed, point_tags, run_shard
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tags = point_tags(args.tag, args.size, args.cfg, 1.0, "LlamaGen: s = 1 is no guidance")
    gpt, tok = _load(args)
    plan = ShardPlan(num=args.num, num_classes=gpt.cfg.num_classes, num_shards=args.num_shards,
                     shard=args.shard, chunk_size=args.chunk_size, seed=args.seed)
    guidance = Guidance("cfg", args.cfg) if args.cfg != 1.0 else Guidance("none")
    scfg = ar.SamplerConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            batch_size=args.batch_size, compile=args.compile)
    mode = "torch.compile over a static cache" if args.compile else "eager"
    n_tokens = gpt.cfg.seq_len

    def draw(indices, labels):
        out = []
        for i in range(0, len(indices), scfg.batch_size):
            idx = indices[i:i + scfg.batch_size]
            uniforms = torch.stack([torch.rand(n_tokens, generator=torch.Generator().manual_seed(
                image_seed(args.seed, j))) for j in idx])
            codes = ar.sample_batch(gpt, torch.from_numpy(labels[i:i + scfg.batch_size]), guidance,
                                    scfg, None, uniforms=uniforms)
            out.append(tok.decode(codes.cpu().numpy()))
        return np.concatenate(out)

    settings = {
        "family": "llamagen", "sampler": "next-token (KV cache)", "compile": bool(args.compile), "model_file": str(args.model),
        "model_sha256": file_sha256(args.model), "tokenizer_file": str(args.tokenizer),
        "tokenizer_sha256": file_sha256(args.tokenizer), "official_gpt": args.size,
        "gpt_config": gpt.cfg.to_dict(), "image_size": args.image_size,
        "eval_size": args.eval_size or args.image_size,
        "resize": "bicubic on the unclamped decoder output, then clamp(127.5x + 128)" if args.eval_size else "none",
        "cfg": float(args.cfg), "cfg_convention": "LlamaGen: logits = u + s(c - u); s = 1 is no guidance",
        "guidance": guidance.method, "forward_passes_per_token": 1 if guidance.method == "none" else 2,
        "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
        "batch_size": args.batch_size, "dtype": args.dtype, "device": args.device,
        "class_balanced": True, "beta": None, "lam": None, **tags,
        "differs_from_official": ["class-balanced labels (official: uniform random)",
                                  "a seed per image (official: one seed per rank)",
                                  f"{args.dtype} {mode} (official: bf16 + torch.compile)"],
    }
    work = args.work or f"{args.out}.chunks"
    manifest = run_shard(plan, work, draw, settings, args.out, max_new_chunks=args.max_chunks or None,
                         progress=(lambda m: None) if args.no_progress else print)
    if manifest is not None:
        print(f"[llamagen-sample-shard] shard {args.shard}/{args.num_shards}: {manifest['count']} images "
              f"-> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llamagen-sample-shard",
                       help="one resumable shard of a paper-tier point from the official LlamaGen files")
    p.add_argument("--model", required=True, help="official c2i_SIZE_384.pt (or a CCA fine-tune in that layout)")
    p.add_argument("--size", required=True, help="B, L, XL, XXL or 3B")
    p.add_argument("--tokenizer", required=True, help="official vq_ds16_c2i.pt")
    p.add_argument("--gpt-config", default="", help="JSON overrides of the official GPT config (tests only)")
    p.add_argument("--vq-config", default="", help="JSON VQ16Config fields (tests' tiny files only)")
    p.add_argument("--image-size", type=int, default=384, help="generation size (384: 24x24 tokens)")
    p.add_argument("--eval-size", type=int, default=256, help="bicubic resize of the decoded images; 0 = none")
    p.add_argument("--cfg", type=float, default=1.0, help="LlamaGen CFG scale s; 1 = no guidance")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="0 = off (the paper)")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off (the paper)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true",
                   help="decode on a static KV cache (padded to a multiple of 8) with one torch.compile'd "
                        "step: CUDA graphs on a GPU (the official sampler's setting), inductor on a CPU")
    add_shard_args(p)
    p.set_defaults(func=_sample_shard)
