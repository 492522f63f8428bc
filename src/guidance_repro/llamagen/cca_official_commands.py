"""Paper-tier CCA fine-tuning of LlamaGen from the official files: ``llamagen-cca-official``.

    torchrun --nproc_per_node=8 -m guidance_repro llamagen-cca-official --size B \
        --pretrained c2i_B_384.pt --codes imagenet384_codes.npz \
        --out results/cca/B.pt --out-official results/cca/c2i_B_384_CCA.pt

The recipe is the paper's (cca.md §1.2/§1.3) unless a flag says otherwise: β 0.02 and λ per size,
uncond_ratio 0.1, lr 1e-5 constant, AdamW (0.9, 0.95), wd 0.05 on >= 2-D weights, grad clip 1.0,
one epoch at global batch 256, dropout kept in policy and reference (both in train mode), class
dropout 1e-5 (1e-6 for XXL/3B, the FSDP sizes), bf16 autocast, and the official script's
unusual semantics: the per-process micro-batch is 2 (negatives are rolled within it) and the
micro-batch losses are SUMMED over the accumulation steps before clipping (``--accumulation-reduce
mean`` is the corrected variant). XXL and 3B run FSDP (policy, reference and optimizer sharded).

Two files come out: ``--out`` (the training loop's model file, with 'recipe' and 'train_config';
resumable from ``<out>.ckpt/`` after a kill) and ``--out-official`` (``{'model': state dict}``,
official key names, plus the recipe under 'cca_recipe'), which the official sampler and
``sample-ar --official-gpt`` read; ``<out-official>.json`` holds the recipe as text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.train.official_finetune import add_official_finetune_args

# cca.md §1.3 (CCA, guidance-free sampling) and §1.2 (class dropout by script).
LAMBDA = {"B": 1000.0, "L": 300.0, "XL": 1000.0, "XXL": 1000.0, "3B": 500.0}
FSDP_SIZES = ("XXL", "3B")
OFFICIAL_MICRO_BATCH = 2  # 256 / 8 GPUs / 16 accumulation steps


def recipe_params(args: argparse.Namespace, world: int) -> tuple[dict, dict]:
    """(task params, train config) of the run, from the flags and the per-size defaults."""
    from guidance_repro.train.config import accumulation_for
    size = args.size
    accumulation = accumulation_for(args.global_batch, args.micro_batch, world)
    task = {"official_size": size, "image_size": args.image_size, "beta": args.beta,
            "lam": LAMBDA[size] if args.lam is None else args.lam, "uncond_ratio": args.uncond_ratio,
            "class_dropout": (1e-6 if size in FSDP_SIZES else 1e-5) if args.class_dropout is None
            else args.class_dropout, "dropout": args.dropout, "method": args.method}
    if args.model_overrides:
        task["model_overrides"] = json.loads(args.model_overrides)
    parallel = args.parallel or ("fsdp" if size in FSDP_SIZES else "ddp")
    train = {"steps": args.steps, "batch_size": args.global_batch, "lr": args.lr,
             "optimizer": "adamw", "betas": [0.9, 0.95], "weight_decay": 0.05, "schedule": "constant",
             "grad_clip": 1.0, "accumulation": accumulation,
             "accumulation_reduce": args.accumulation_reduce, "parallel": parallel,
             "precision": args.precision, "seed": args.seed, "device": args.device,
             "checkpoint_every": args.checkpoint_every, "log_every": args.log_every}
    return task, train


def _run(args: argparse.Namespace) -> None:
    from guidance_repro.llamagen.cca_task import LlamaGenCCATask
    from guidance_repro.llamagen.model import GPT, GPTConfig
    from guidance_repro.llamagen.official import save_official_gpt
    from guidance_repro.train.official_finetune import require_inputs, run_official_finetune, world_size

    task_params, train_params = recipe_params(args, world_size(args.threads))
    inputs = {"pretrained": Path(args.pretrained), "codes": Path(args.codes)}  # codes: file or merged folder
    if args.reference:
        inputs["reference"] = Path(args.reference)
    require_inputs(inputs)

    done = run_official_finetune(
        LlamaGenCCATask(task_params, inputs), train_params, args.global_batch, args.codes, args.out,
        args.out_official, (GPT, GPTConfig), lambda m, path, recipe: save_official_gpt(m, path, extra={"cca_recipe": recipe}),
        {"pretrained": str(args.pretrained), "reference": str(args.reference or args.pretrained),
         "codes": str(args.codes)}, progress=not args.no_progress)
    if done is not None:
        summary, cfg, official = done
        print(f"[llamagen-cca-official] {args.size}: {summary['steps']} steps on {summary['world_size']} "
              f"process(es), accumulation {cfg.accumulation} ({cfg.accumulation_reduce}), final loss "
              f"{summary['final_loss']:.6g} -> {args.out}, {official}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llamagen-cca-official",
                       help="paper tier: CCA fine-tune of an official c2i_*_384.pt (torchrun; FSDP for XXL/3B)")
    p.add_argument("--size", required=True, choices=sorted(LAMBDA), help="LlamaGen size")
    p.add_argument("--pretrained", required=True, help="official c2i_SIZE_384.pt (or a CCA release): the initial policy")
    p.add_argument("--codes", required=True, help="merged codes: the folder of llamagen-merge-codes or a codes .npz (llamagen/crop_codes.py)")
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--micro-batch", type=int, default=OFFICIAL_MICRO_BATCH,
                   help="per-process micro-batch; negatives are rolled within it (official: 2)")
    p.add_argument("--accumulation-reduce", choices=("sum", "mean"), default="sum",
                   help="sum (official: micro-batch losses summed before clipping) or mean (corrected)")
    p.add_argument("--class-dropout", type=float, default=None, help="default 1e-5 (1e-6 for XXL/3B)")
    p.add_argument("--dropout", choices=("keep", "off"), default="keep")
    p.add_argument("--parallel", choices=("ddp", "fsdp"), default="", help="default: fsdp for XXL/3B")
    p.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16")
    add_official_finetune_args(p, lr=1e-5, lam_of="--size", model_fields="GPT")
    p.set_defaults(func=_run)
