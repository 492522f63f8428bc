"""CLI command of the ImageReward metric (paper tier); scoring runs in .venv-imagereward."""

from __future__ import annotations

import argparse

from guidance_repro.metrics.imagereward import compute_imagereward


def _imagereward(args: argparse.Namespace) -> None:
    m = compute_imagereward(args.samples, args.out, checkpoint=args.checkpoint, med_config=args.med_config,
                            tokenizer=args.tokenizer, python=args.python, device=args.device,
                            batch_size=args.batch_size)
    print(f"[imagereward] {m['count']} images, {m['n_prompts']} prompts: mean {m['mean_reward']:.4f}, "
          f"mean of prompt means {m['mean_of_prompt_means']:.4f} -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("imagereward", help="ImageReward of a samples npz with a local checkpoint (offline)")
    p.add_argument("--samples", required=True, help="samples .npz: images uint8 (N,H,W,3), captions (N,) str")
    p.add_argument("--checkpoint", required=True, help="local ImageReward.pt (evaluation.imagereward.checkpoint)")
    p.add_argument("--med-config", required=True, help="med_config.json (evaluation.imagereward.med_config)")
    p.add_argument("--tokenizer", required=True,
                   help="local bert-base-uncased tokenizer folder with vocab.txt (evaluation.imagereward.tokenizer)")
    p.add_argument("--out", required=True, help="output metrics .json")
    p.add_argument("--python", default=None,
                   help="python of the isolated environment (default: .venv-imagereward/bin/python)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=_imagereward)
