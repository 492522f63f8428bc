"""Benchmark one CCA fine-tuning step of a LlamaGen-B-shaped GPT on the CPU, ours beside the official's; save JSON.

Ours is the paper tier's own step (``llamagen-cca-official``'s task and the training loop's
``accumulate``): policy and frozen reference (both in train mode, dropout kept) over [x; x] with
[c+; c-], backward, grad clip 1.0, AdamW (0.9, 0.95), wd 0.05. Weights are random in the official
layout (speed does not depend on them), written to a temporary official-layout file and read back
by the same loader as the real ``c2i_B_384.pt``; codes are random in the merged ten-crop format.

The official column (``--official-root-llamagen``, a local clone of FoundationVision/LlamaGen; nothing
official is in this repository): the official GPT module, built as thu-ml/CCA's LlamaGen_finetune.py
builds it with ``--keep_dropout`` (class dropout 1e-5), loaded with the same weights, its frozen
reference a deep copy in train mode, both called with ``targets`` as that script calls them; the CCA
loss as that script computes it (uncond_ratio 0.1), written here from its formula (cca.md §1.1);
clip 1.0 and AdamW as its ``creat_optimizer`` (fused where torch offers it). Same batches, the steps
of the two taken in turns (A B A B ...), best of ``--steps``.

    python benchmarks/cca_finetune_step.py [--size B] [--image-size 384] [--micro-batch 2] \
        [--official-root-llamagen ~/src/LlamaGen] [--precisions float32] [--steps 3] [--clock cpu] \
        [--out results/benchmarks/cca_finetune_step.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from guidance_repro.io import write_json
from guidance_repro.llamagen import official
from guidance_repro.llamagen.cca_task import LlamaGenCCATask
from guidance_repro.llamagen.crop_codes import write_crop_codes
from guidance_repro.official_clone import import_from_clone
from guidance_repro.sampling.bench_script import CLOCKS, interleaved_times
from guidance_repro.train.loop import accumulate

BETA, LAM, UNCOND_RATIO, CLASS_DROPOUT = 0.02, 1000.0, 0.1, 1e-5  # LlamaGen-B (cca.md §1.3)


def build_task(size: str, image_size: int, precision_dir: Path) -> tuple[LlamaGenCCATask, dict]:
    """Our task on random official-layout weights, and those weights (for the official model)."""
    cfg = official.official_gpt_config(size, image_size)
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.02 for k, s in official.gpt_layout(cfg).items()}
    torch.save({"model": sd}, precision_dir / f"c2i_{size}.pt")
    rng = np.random.default_rng(0)
    codes = rng.integers(0, cfg.vocab_size, size=(16, 10, 2, cfg.seq_len)).astype(np.uint16)
    write_crop_codes(precision_dir / "codes.npz", codes, rng.integers(0, cfg.num_classes, 16))
    task = LlamaGenCCATask({"official_size": size, "image_size": image_size, "lam": LAM, "beta": BETA,
                            "uncond_ratio": UNCOND_RATIO, "class_dropout": CLASS_DROPOUT},
                           {"pretrained": precision_dir / f"c2i_{size}.pt", "codes": precision_dir / "codes.npz"})
    return task, sd


def adamw(model, fused: bool = False):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                             lr=1e-5, betas=(0.9, 0.95), **({"fused": True} if fused else {}))


def our_step(task: LlamaGenCCATask, model, batches: list, precision: str):
    """fn(r): one micro-step of ours on ``batches[r]`` (+ clip and optimizer step)."""
    opt = adamw(model)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")

    def run(r):
        torch.manual_seed(r)
        loss, _, _ = accumulate(model, task, [batches[r]], r, "sum", autocast, contextlib.nullcontext)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return run


def official_cca_loss(gap_pos, gap_neg, positive_like, beta: float, lam: float):
    """The official code form: masked or same-label negatives pushed up with weight 1, true
    negatives pushed down with weight lam, the total divided by max(lam, 1)."""
    weight = torch.where(positive_like, 1.0, lam)
    sign = torch.where(positive_like, 1.0, -1.0)
    total = -F.logsigmoid(beta * gap_pos).mean() - (weight * F.logsigmoid(sign * beta * gap_neg)).mean()
    return total / max(lam, 1.0)


def official_step(gpt_module, size: str, grid: int, sd: dict, batches: list):
    """fn(r): the official fine-tune script's micro-step with the official GPT module on ``batches[r]``."""
    model = gpt_module.GPT_models[f"GPT-{size}"](
        vocab_size=16384, block_size=grid * grid, num_classes=1000, cls_token_num=1, model_type="c2i",
        resid_dropout_p=0.1, ffn_dropout_p=0.1, drop_path_rate=0.0, token_dropout_p=0.1,
        class_dropout_prob=CLASS_DROPOUT)
    model.load_state_dict(sd, strict=True)
    reference = copy.deepcopy(model).requires_grad_(False)
    model.train(), reference.train()
    fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    opt = adamw(model, fused)

    def seq_logp(logits, z):
        return logits.log_softmax(-1).gather(2, z.unsqueeze(2)).squeeze(2).sum(-1)

    def run(r):
        torch.manual_seed(r)
        z, c = batches[r]["codes"], batches[r]["labels"].clone()
        c_neg = torch.roll(c, shifts=-1, dims=0)
        masked = torch.rand(len(c)) < UNCOND_RATIO
        c_neg[masked] = 1000
        c[masked] = 1000
        c2, z2, b = torch.cat([c, c_neg]), torch.cat([z, z]), len(c)
        with torch.no_grad():
            ref_logits, _ = reference(cond_idx=c2, idx=z2[:, :-1], targets=z2)
        logits, _ = model(cond_idx=c2, idx=z2[:, :-1], targets=z2)
        gap = seq_logp(logits, z2) - seq_logp(ref_logits, z2)
        loss = official_cca_loss(gap[:b], gap[b:], masked | (c_neg == c), BETA, LAM)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return run, fused


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="B")
    ap.add_argument("--image-size", type=int, default=384)
    ap.add_argument("--micro-batch", type=int, default=2)
    # bfloat16 autocast is on offer but slow on CPUs without bf16 matrix units (on the 2-core dev
    # machine 3 passes at B/384 did not finish in 11 minutes); the paper's bf16 is a GPU figure.
    ap.add_argument("--precisions", default="float32", help="comma-separated: float32, bfloat16 (ours only)")
    ap.add_argument("--official-root-llamagen", default="",
                    help="a local clone of FoundationVision/LlamaGen: adds the official column (float32)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="cpu: this process's CPU seconds (use with --threads 1 on a shared machine); wall")
    ap.add_argument("--out", default="results/benchmarks/cca_finetune_step.json")
    args = ap.parse_args(argv)
    gpt_module = None
    if args.official_root_llamagen:
        if "float32" not in args.precisions.split(","):
            raise SystemExit("--official-root-llamagen: the official column is float32; add it to --precisions")
        gpt_module, = import_from_clone(args.official_root_llamagen, ["autoregressive.models.gpt"],
                                        "--official-root-llamagen", "FoundationVision/LlamaGen")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        task, sd = build_task(args.size, args.image_size, Path(tmp))
    batches = [task.get_batch(np.arange(r * args.micro_batch, (r + 1) * args.micro_batch) % task.num_examples())
               for r in range(args.steps + 1)]
    model = task.build_model()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    runs = {f"ours_{p}": our_step(task, model, batches, p) for p in args.precisions.split(",")}
    fused = None
    if gpt_module is not None:
        runs["official_float32"], fused = official_step(gpt_module, args.size, task.cfg.grid, sd, batches)
    del sd
    first_loss = {name: run(0) for name, run in runs.items()}  # step 0 warms up (allocator, first touch)
    times = interleaved_times({name: (lambda r, run=run: run(r + 1)) for name, run in runs.items()},
                              args.steps, clock=CLOCKS[args.clock])
    tokens = 2 * args.micro_batch * task.cfg.seq_len  # [x; x] through the policy
    results = {name: {"seconds_best": min(t), "seconds_all": t, "policy_tokens_per_s": tokens / min(t),
                      "warmup_loss": first_loss[name]} for name, t in times.items()}
    for name, r in results.items():
        print(f"{args.size} {name}: {r['seconds_best']:.2f} s per micro-step of {args.micro_batch} "
              f"(+ optimizer step), {r['policy_tokens_per_s']:.0f} policy tokens/s", flush=True)
    record = {"benchmark": "cca_finetune_step", "size": args.size, "params": n_params,
              "image_size": args.image_size, "tokens_per_sequence": task.cfg.seq_len,
              "micro_batch": args.micro_batch, "step": "1 micro-batch: policy fwd+bwd on [x;x], "
              "reference fwd (train mode), clip 1.0, AdamW", "clock": args.clock, "results": results,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_1min": os.getloadavg()[0]}
    if gpt_module is not None:
        record["official"] = {"root": str(Path(args.official_root_llamagen).expanduser().resolve()),
                              "model": "FoundationVision/LlamaGen autoregressive/models/gpt.py (called with targets)",
                              "step": "thu-ml/CCA LlamaGen_finetune.py's micro-step, loss written from its formula",
                              "adamw_fused": fused}
        record["ours_over_official_speed"] = (results["official_float32"]["seconds_best"]
                                             / results["ours_float32"]["seconds_best"])
        print(f"ours / official speed (float32): {record['ours_over_official_speed']:.2f}x")
    write_json(Path(args.out), record)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
