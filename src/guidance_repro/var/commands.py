"""CLI commands of the VAR family: ``msvq-encode``, ``msvq-reconstruct`` and ``var-sample``.

    guidance-repro msvq-encode --tokenizer T.pt --data fashion_mnist.npz --split train --out codes.npz
    guidance-repro msvq-reconstruct --tokenizer T.pt --data fashion_mnist.npz --split test --out rec.npz
    guidance-repro var-sample --model M.pt --tokenizer T.pt --num 2000 --cfg 1.5 --out s.npz \
        --tag model=d4 --tag method=cfg

``var-sample`` writes a samples file whose ``meta_json`` holds the sampler settings, the seconds
per image and the ``--tag`` values (family, model, method, beta, lam): ``evaluate`` copies it into
the metrics JSON, which is all ``cca-table`` needs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from guidance_repro.data import samples as samples_io
from guidance_repro.data.samples import parse_tags
from guidance_repro.errors import ReproError
from guidance_repro.sampling.bench_script import add_common_args as add_benchmark_args
from guidance_repro.sampling.cli_args import add_sampler_args, add_tokenizer_args
from guidance_repro.io import save_npz, write_json


def _threads(n: int) -> None:
    if n > 0:
        import torch
        torch.set_num_threads(n)


def _encode(args: argparse.Namespace) -> None:
    from guidance_repro.var.msvq import load_images, load_msvq
    _threads(args.threads)
    tok = load_msvq(args.tokenizer)
    images, labels = load_images({"data": args.data}, args.split)
    codes = tok.encode(images)
    save_npz(args.out, codes=codes.astype(np.int64), labels=labels,
             patch_nums=np.asarray(tok.cfg.patch_nums, np.int64))
    print(f"[msvq-encode] {len(codes)} {args.split} images -> {codes.shape[1]} tokens each -> {args.out}")


def _reconstruct(args: argparse.Namespace) -> None:
    from guidance_repro.var.msvq import load_images, load_msvq
    _threads(args.threads)
    tok = load_msvq(args.tokenizer)
    images, labels = load_images({"data": args.data}, args.split)
    if args.num:
        images, labels = images[:args.num], labels[:args.num]
    rec = tok.decode(tok.encode(images))
    samples_io.write(args.out, rec, labels, meta={
        "kind": "reconstruction", "tokenizer": str(args.tokenizer), "split": args.split,
        "patch_nums": list(tok.cfg.patch_nums), "codebook_size": tok.cfg.codebook_size})
    print(f"[msvq-reconstruct] {len(rec)} {args.split} images -> {args.out}")




def _sample(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.sampling import next_scale as ns
    from guidance_repro.var.msvq import load_msvq
    from guidance_repro.var.tasks import load_var
    _threads(args.threads)
    model, tok = load_var(args.model), load_msvq(args.tokenizer)
    guidance = Guidance("cfg", args.cfg) if args.cfg != 0 else Guidance("none")
    scfg = ns.SamplerConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            batch_size=args.batch_size, use_cache=not args.no_cache)
    if args.num < 1:
        raise ReproError(f"--num: must be >= 1, got {args.num}")
    labels = ns.class_balanced_labels(args.num, model.cfg.num_classes, args.seed)
    t0 = time.perf_counter()
    out = ns.sample_images(model, tok, labels, guidance, scfg, args.seed, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    meta = {"family": "var", "sampler": "next-scale", "model_file": str(args.model),
            "cfg": float(args.cfg), "cfg_convention": "VAR ramp t = cfg*si/(S-1); logits = (1+t)c - t u",
            "guidance": guidance.method, "top_k": args.top_k, "top_p": args.top_p,
            "temperature": args.temperature, "seed": args.seed, "num": args.num,
            "use_cache": not args.no_cache, "threads": torch.get_num_threads(),
            "seconds": seconds, "seconds_per_image": seconds / args.num,
            "class_balanced": True, **parse_tags(args.tag)}
    samples_io.write(args.out, out["images"], out["labels"], meta=meta)
    print(f"[var-sample] {args.num} images, cfg {args.cfg}, {seconds:.1f} s -> {args.out}")


def _benchmark(args: argparse.Namespace) -> None:
    """benchmarks/var_sampling.py: guidance-free vs CFG time and KV cache vs recompute."""
    from guidance_repro.sampling.bench_script import run_script
    argv = ["--num", str(args.images), "--batch", str(args.batch), "--repeats", str(args.repeats),
            "--threads", str(args.threads)]
    if bool(args.model) != bool(args.tokenizer):
        raise ReproError("--model and --tokenizer: give both (trained weights) or neither (random)")
    if args.model:
        argv += ["--model", args.model, "--tokenizer", args.tokenizer]
    result = run_script(args.script, argv, args.out)
    result.update(model=args.model_name or result["model"])
    write_json(args.out, result)
    print(f"[var-benchmark] CFG / guidance-free time {result['cfg_over_guidance_free_time']:.2f}, "
          f"KV cache x{result['recompute_over_cache_time']:.1f} -> {args.out}")


def _check_official(args: argparse.Namespace) -> None:
    from guidance_repro.io import json_object_arg, write_json
    from guidance_repro.var.model import num_params
    from guidance_repro.var.official import load_official_vae_quantizer, load_official_var, load_official_vqvae
    overrides = json_object_arg(args.model_overrides, "--model-overrides")
    vae_config = json_object_arg(args.vae_config, "--vae-config")
    report = {"var": {}, "vae": None, "test_standin_widths": bool(overrides or vae_config)}
    for pair in args.var:
        depth, sep, path = pair.partition("=")
        if not sep or not depth.isdigit():
            raise ReproError(f"--var: expected DEPTH=PATH, got {pair!r}")
        model = load_official_var(path, expect_depth=int(depth), overrides=overrides.get(depth) or None)
        report["var"][f"d{depth}"] = {"path": path, "params": num_params(model),
                                      "tensors": len(model.state_dict())}
        del model
    if args.vae and vae_config:  # tiny test widths: the key-by-key strict load, not the release layout
        q = load_official_vqvae(args.vae, vae_config.get("patch_nums")).quantize
    elif args.vae:
        q = load_official_vae_quantizer(args.vae)
    if args.vae:
        report["vae"] = {"path": args.vae, "codebook": list(q.embedding.weight.shape),
                         "patch_nums": list(q.cfg.patch_nums)}
    write_json(args.out, report)
    print(f"[var-check-official] {len(report['var'])} VAR file(s){' + VQVAE' if args.vae else ''} load strictly -> {args.out}")


def _mechanism(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.io import write_json
    from guidance_repro.var.mechanism import cfg_kl
    from guidance_repro.var.msvq import load_msvq
    from guidance_repro.var.tasks import load_var
    _threads(args.threads)
    model, tok = load_var(args.model), load_msvq(args.tokenizer)
    labels = torch.arange(args.num) % model.cfg.num_classes
    write_json(args.out, cfg_kl(model, tok, labels, seed=args.seed))
    print(f"[var-mechanism] CFG KL per scale on {args.num} images -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("var-mechanism", help="mechanism metrics: KL(guided || conditional) per VAR cfg")
    p.add_argument("--model", required=True, help="a VAR model file (pretrained)")
    p.add_argument("--tokenizer", required=True, help="its multi-scale VQ tokenizer")
    p.add_argument("--num", type=int, default=20, help="images drawn (labels i mod K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_mechanism)

    p = sub.add_parser("var-check-official", help="strict load of official var_d*.pth / VQVAE files")
    p.add_argument("--var", action="append", default=[], metavar="DEPTH=PATH")
    p.add_argument("--vae", default="")
    p.add_argument("--model-overrides", default="", help="JSON {DEPTH: VARConfig overrides} (tests' tiny files only)")
    p.add_argument("--vae-config", default="", help="JSON {patch_nums: [...]} of a tiny VQVAE (tests only)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_check_official)

    p = sub.add_parser("var-benchmark", help="benchmarks/var_sampling.py: guidance-free vs CFG, KV cache")
    add_benchmark_args(p, "benchmarks/var_sampling.py")
    p.add_argument("--tokenizer", default="", help="the model's multi-scale tokenizer file")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("msvq-encode", help="multi-scale VQ tokens (N, L) of a dataset split")
    add_tokenizer_args(p, "train", reconstruct=False)
    p.set_defaults(func=_encode)

    p = sub.add_parser("msvq-reconstruct", help="encode + decode a split (reconstruction FID)")
    add_tokenizer_args(p, "test", reconstruct=True)
    p.set_defaults(func=_reconstruct)

    p = sub.add_parser("var-sample", help="class-balanced next-scale samples of a VAR model")
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--num", type=int, required=True)
    add_sampler_args(p, 0.0, "VAR cfg (ramp end value); 0 = none")
    p.set_defaults(func=_sample)
