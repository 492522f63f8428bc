"""CLI commands of the LlamaGen family (next-token AR on VQ codes): ``encode-codes``,
``vq-reconstruct``, ``sample-ar``, ``ar-benchmark`` and ``llamagen-check-official``.

    guidance-repro encode-codes --tokenizer T.pt --data fashion_mnist.npz --split train --out codes.npz
    guidance-repro vq-reconstruct --tokenizer T.pt --data fashion_mnist.npz --split test --out rec.npz
    guidance-repro sample-ar --model M.pt --tokenizer T.pt --num 2000 --cfg 2.0 --out s.npz \
        --tag model=S --tag method=cfg
    guidance-repro ar-benchmark --script benchmarks/ar_sampling.py --model M.pt --out bench.json
    guidance-repro llamagen-check-official --gpt B=/data/c2i_B_384.pt --vq /data/vq_ds16_c2i.pt --out r.json

``sample-ar`` writes a samples file whose ``meta_json`` records the model file, the guidance
method and LlamaGen CFG scale s (logits = u + s(c - u); s = 1 is no guidance and runs the single
batch), the sampler settings, the seconds per image and the ``--tag`` values (family, model,
method, beta, lam): ``evaluate`` copies it into the metrics JSON, which is all ``cca-table`` needs.
Heavy imports stay inside the command functions so that the CLI starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guidance_repro.data.samples import parse_tags
from guidance_repro.errors import ReproError
from guidance_repro.io import json_object_arg
from guidance_repro.sampling.bench_script import add_common_args as add_benchmark_args
from guidance_repro.sampling.cli_args import add_sampler_args, add_tokenizer_args


def _threads(n: int) -> None:
    if n > 0:
        import torch
        torch.set_num_threads(n)


def _encode(args: argparse.Namespace) -> None:
    from guidance_repro.llamagen.tokenizer import write_codes
    _threads(args.threads)
    write_codes(args.data, args.tokenizer, args.out, split=args.split)
    print(f"[encode-codes] {args.split} split of {args.data} -> {args.out}")


def _reconstruct(args: argparse.Namespace) -> None:
    from guidance_repro.data import samples as samples_io
    from guidance_repro.data.fashion_mnist import load
    from guidance_repro.llamagen.tokenizer import load_vq
    _threads(args.threads)
    tok = load_vq(args.tokenizer)
    images, labels = load(args.data).split(args.split)
    if args.num:
        images, labels = images[:args.num], labels[:args.num]
    rec = tok.decode(tok.encode(images))
    samples_io.write(args.out, rec, labels, meta={
        "kind": "reconstruction", "family": "llamagen", "tokenizer": str(args.tokenizer),
        "split": args.split, "grid": tok.cfg.grid, "codebook_size": tok.cfg.codebook_size})
    print(f"[vq-reconstruct] {len(rec)} {args.split} images -> {args.out}")




def _sample(args: argparse.Namespace) -> None:
    import time

    import torch

    from guidance_repro.data import samples as samples_io
    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.llamagen.model import load_gpt
    from guidance_repro.sampling import ar
    if args.num < 1:
        raise ReproError(f"--num: must be >= 1, got {args.num}")
    _threads(args.threads)
    model, tok = _sampling_models(args)
    if model.cfg.vocab_size != tok.cfg.codebook_size or model.cfg.grid != tok.cfg.grid:
        raise ReproError(f"--model: {args.model} has vocab {model.cfg.vocab_size} on a {model.cfg.grid}-grid, "
                         f"the tokenizer {tok.cfg.codebook_size} codes on a {tok.cfg.grid}-grid")
    # s = 1 is no guidance (u + 1(c - u) = c): sample the single batch, as a CCA model is sampled.
    guidance = Guidance("cfg", args.cfg) if args.cfg != 1.0 else Guidance("none")
    guide = None
    if args.guide:  # autoguidance: logits = guide + w(main - guide); w = 1 is the main model alone
        if args.cfg != 1.0:
            raise ReproError(f"--guide: autoguidance and CFG (--cfg {args.cfg:g}) are not combined here")
        guide = load_gpt(args.guide).to(next(model.parameters()).device)
        guidance = Guidance("autoguidance", args.w)
    elif args.w != 1.0:
        raise ReproError(f"--w {args.w:g}: an autoguidance weight needs --guide")
    scfg = ar.SamplerConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            batch_size=args.batch_size, use_cache=not args.no_cache)
    t0 = time.perf_counter()
    out = ar.sample_images(model, tok, args.num, guidance, scfg, args.seed, progress=not args.no_progress,
                           guide=guide)
    seconds = time.perf_counter() - t0
    tags = parse_tags(args.tag)
    meta = {"family": "llamagen", "sampler": "next-token", "model_file": str(args.model),
            "tokenizer_file": str(args.tokenizer), "cfg": float(args.cfg),
            "cfg_convention": "LlamaGen: logits = u + s(c - u); s = 1 is no guidance",
            "guidance": guidance.method, "guide_file": str(args.guide or ""), "w": float(args.w),
            "forward_passes_per_token": 1 if guidance.method == "none" else 2,
            "top_k": args.top_k, "top_p": args.top_p,
            "temperature": args.temperature, "seed": args.seed, "num": args.num,
            "batch_size": args.batch_size, "use_cache": not args.no_cache, "device": args.device,
            "official_gpt": args.official_gpt, "official_vq": args.official_vq,
            "image_size": tok.cfg.image_size, "eval_size": args.eval_size or tok.cfg.image_size,
            "threads": torch.get_num_threads(), "seconds": seconds,
            "seconds_per_image": seconds / args.num, "class_balanced": True,
            "beta": None, "lam": None, **tags}
    samples_io.write(args.out, out["images"], out["labels"], meta=meta)
    scale = args.w if guide is not None else args.cfg
    print(f"[sample-ar] {args.num} images, {guidance.method} {scale:g}, {seconds:.1f} s -> {args.out}")


def _sampling_models(args: argparse.Namespace):
    """The GPT and tokenizer of ``sample-ar``: model files of this pipeline, or (paper tier) the
    official ``c2i_*_384.pt`` (``--official-gpt SIZE``) and ``vq_ds16_c2i.pt`` (``--official-vq``),
    loaded strictly and moved to ``--device``."""
    import torch

    from guidance_repro.llamagen.model import load_gpt
    from guidance_repro.llamagen.official import load_official_gpt, load_official_vq
    from guidance_repro.llamagen.tokenizer import load_vq
    if args.eval_size and not args.official_vq:
        raise ReproError("--eval-size: the bicubic resize of the paper protocol needs --official-vq")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproError(f"--device {args.device}: no CUDA device on this machine")
    model = (load_official_gpt(args.model, size=args.official_gpt, image_size=args.image_size)
             if args.official_gpt else load_gpt(args.model))
    tok = (load_official_vq(args.tokenizer, image_size=args.image_size, out_size=args.eval_size)
           if args.official_vq else load_vq(args.tokenizer))
    return model.to(args.device), tok.to(args.device)


def _benchmark(args: argparse.Namespace) -> None:
    """benchmarks/ar_sampling.py: guidance-free vs CFG time and KV cache vs recompute."""
    from guidance_repro.io import write_json
    from guidance_repro.sampling.bench_script import run_script
    argv = ["--images", str(args.images), "--batch", str(args.batch), "--cfg-scale", str(args.cfg_scale),
            "--long-images", str(args.long_images), "--repeats", str(args.repeats),
            "--threads", str(args.threads)] + (["--model", args.model] if args.model else [])
    result = run_script(args.script, argv, args.out)
    result.update(family="llamagen", model=args.model_name or result["model"]["source"],
                  cfg_over_guidance_free_time=result["guidance_free_over_cfg_speed"])
    write_json(args.out, result)
    print(f"[ar-benchmark] CFG / guidance-free time {result['cfg_over_guidance_free_time']:.2f}, "
          f"KV cache x{result['kv_cache_speedup_256']:.1f} (256 tokens) -> {args.out}")


def _check_official(args: argparse.Namespace) -> None:
    from guidance_repro.io import write_json
    from guidance_repro.llamagen.model import num_params
    from guidance_repro.llamagen.official import check_official_vq, load_official_gpt, load_official_vq
    from guidance_repro.llamagen.vq16 import VQ16Config
    overrides = json_object_arg(args.gpt_overrides, "--gpt-overrides")
    vq_config = json_object_arg(args.vq_config, "--vq-config")
    report = {"gpt": {}, "vq": None, "image_size": args.image_size,
              "test_standin_widths": bool(overrides or vq_config)}
    for pair in args.gpt:
        size, sep, path = pair.partition("=")
        if not sep or not size or not path:
            raise ReproError(f"--gpt: expected SIZE=PATH, got {pair!r}")
        model = load_official_gpt(path, size=size, image_size=args.image_size, **overrides.get(size, {}))
        report["gpt"][size] = {"path": path, "params": num_params(model), "tensors": len(model.state_dict())}
        del model
    if args.vq and vq_config:  # tiny test widths: the key-by-key strict load, not the full-size layout
        vq = load_official_vq(args.vq, image_size=args.image_size,
                              cfg=VQ16Config.from_dict({**vq_config, "image_size": args.image_size}))
        report["vq"] = {"path": args.vq, "tensors": len(vq.state_dict()),
                        "codebook": [vq.cfg.codebook_size, vq.cfg.code_dim]}
    elif args.vq:
        sd = check_official_vq(args.vq)
        report["vq"] = {"path": args.vq, "tensors": len(sd),
                        "codebook": list(sd["quantize.embedding.weight"].shape)}
    write_json(args.out, report)
    print(f"[llamagen-check-official] {len(report['gpt'])} GPT file(s){' + VQ-16' if args.vq else ''} "
          f"load strictly -> {args.out}")


def _reference_logp(args: argparse.Namespace) -> None:
    from guidance_repro.io import save_npz
    from guidance_repro.llamagen.cca_reference import record
    from guidance_repro.llamagen.cca_task import LlamaGenCCATask
    from guidance_repro.train.commands import parse_inputs, parse_params
    from guidance_repro.train.config import TrainConfig
    params = parse_params(args.params)
    cfg = TrainConfig.from_dict(params.pop("train", {}), key="train")
    task = LlamaGenCCATask(params, parse_inputs(args.input))
    arrays = record(task, cfg, progress=not args.no_progress)
    save_npz(args.out, **arrays)
    print(f"[cca-reference-logp] {len(arrays['step'])} micro-batches of {cfg.steps} steps -> {args.out}")


def _held_out_codes(inputs: dict, num: int):
    """The first ``num`` held-out sequences: a codes file, or the test split's first ``num``
    images encoded (not the whole split: the metric needs a fixed batch, not the split)."""
    import numpy as np

    from guidance_repro.llamagen.model import load_codes
    if "codes" in inputs or "data" not in inputs or "tokenizer" not in inputs:
        return load_codes(inputs, split="test")
    from guidance_repro.data.fashion_mnist import load
    from guidance_repro.llamagen.tokenizer import load_vq
    images, labels = load(inputs["data"]).split("test")
    codes = load_vq(inputs["tokenizer"]).encode(images[:num])
    return np.asarray(codes, np.int64).reshape(len(codes), -1), np.asarray(labels[:num], np.int64)


def _mechanism(args: argparse.Namespace) -> None:
    from guidance_repro.io import write_json
    from guidance_repro.llamagen.mechanism import mechanism_metrics
    from guidance_repro.train.commands import parse_inputs
    _threads(args.threads)
    inputs = parse_inputs(args.input)
    codes, labels = _held_out_codes(inputs, args.num)
    if len(codes) < args.num:
        raise ReproError(f"--input: {len(codes)} held-out sequences, --num {args.num} needed")
    if "train_codes" not in inputs:
        raise ReproError("--input train_codes=CODES.npz: the probe fine-tune's training codes are needed")
    metrics = mechanism_metrics(args.pretrained, inputs["train_codes"], codes[:args.num], labels[:args.num],
                                args.beta, args.lam, args.beta_mode, seed=args.seed)
    write_json(args.out, metrics)
    print(f"[llamagen-mechanism] {args.num} held-out sequences -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llamagen-mechanism", help="mechanism metrics: CFG KL per scale, CCA margin rise")
    p.add_argument("--pretrained", required=True, type=Path, help="the pretrained GPT model file")
    p.add_argument("--input", action="append", default=[], metavar="KEY=PATH",
                   help="train_codes=CODES.npz (the probe fine-tune's data) and the held-out codes: "
                        "codes=HELD.npz, or data=fashion_mnist.npz and tokenizer=T.pt (its test split)")
    p.add_argument("--beta", type=float, required=True, help="the slice's CCA beta (probe at beta, 2 beta)")
    p.add_argument("--lam", type=float, required=True, help="the slice's CCA lambda (probe at lambda, 3 lambda)")
    p.add_argument("--beta-mode", default="sequence", help="sequence | per_token, as the slice's")
    p.add_argument("--num", type=int, default=64, help="held-out sequences used")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled prefixes of cfg_kl")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_mechanism)

    p = sub.add_parser("encode-codes", help="VQ codes (N, h, w) + labels of a dataset split, once")
    add_tokenizer_args(p, "train", reconstruct=False)
    p.set_defaults(func=_encode)

    p = sub.add_parser("vq-reconstruct", help="encode + decode a split (tokenizer reconstruction FID)")
    add_tokenizer_args(p, "test", reconstruct=True)
    p.set_defaults(func=_reconstruct)

    p = sub.add_parser("sample-ar", help="class-balanced next-token samples of a LlamaGen-style GPT")
    p.add_argument("--model", required=True, help="a llamagen-pretrain / llamagen-cca model file")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--num", type=int, required=True)
    p.add_argument("--guide", default="", help="autoguidance: the guide GPT (smaller, shorter-trained)")
    p.add_argument("--w", type=float, default=1.0, help="autoguidance weight; 1 = the main model alone")
    p.add_argument("--official-gpt", default="", metavar="SIZE",
                   help="paper tier: --model is an official c2i_SIZE_384.pt (B, L, XL, XXL, 3B; or a CCA release)")
    p.add_argument("--official-vq", action="store_true",
                   help="paper tier: --tokenizer is the official vq_ds16_c2i.pt")
    p.add_argument("--image-size", type=int, default=384,
                   help="generation size of the official files (384 -> 24x24 tokens)")
    p.add_argument("--eval-size", type=int, default=0,
                   help="with --official-vq: bicubic resize of the decoded images (the paper: 256); 0 = none")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    add_sampler_args(p, 1.0, "LlamaGen CFG scale s; 1 = no guidance")
    p.set_defaults(func=_sample)

    p = sub.add_parser("ar-benchmark", help="benchmarks/ar_sampling.py: guidance-free vs CFG, KV cache")
    add_benchmark_args(p, "benchmarks/ar_sampling.py")
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--long-images", type=int, default=16)
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("cca-reference-logp", help="the frozen reference's log-likelihoods of a llamagen-cca "
                       "fine-tune's batches, recorded once for every sweep point (dropout off)")
    p.add_argument("--params", default="{}", help="the fine-tune's JSON params (train section included)")
    p.add_argument("--input", action="append", default=[], metavar="KEY=PATH",
                   help="pretrained=MODEL.pt and codes=CODES.npz, as the fine-tune's")
    p.add_argument("--out", required=True, help="output .npz (input reference_logp of the fine-tunes)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reference_logp)

    p = sub.add_parser("llamagen-check-official", help="strict load of official LlamaGen c2i / VQ-16 files")
    p.add_argument("--gpt", action="append", default=[], metavar="SIZE=PATH")
    p.add_argument("--vq", default="")
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--gpt-overrides", default="", help="JSON {SIZE: GPT config overrides} (tests' tiny files only)")
    p.add_argument("--vq-config", default="", help="JSON VQ16Config fields (tests' tiny files only)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_check_official)
