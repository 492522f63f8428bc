"""CLI commands of the toy STAR: ``star-encode``, ``star-sample``, ``star-scores``.

    guidance-repro star-encode --tokenizer T.pt --data compositions.npz --split train \
        --image-size 16 --patch-nums 1,2,3,4 --out tokens-low.npz
    guidance-repro star-sample --model M.pt --tokenizer T.pt --text-encoder E.pt \
        --data compositions.npz --split eval --num 1000 --cfg 2 --out s.npz --tag pos=rope
    guidance-repro star-sample --tokenizer T.pt --text-encoder E.pt --data compositions.npz \
        --num 500 --points '[{"model": "M.pt", "cfg": 3, "seed": 0, "out": "a.npz", "tags": {}}, ...]'
    guidance-repro star-scores --samples s.npz --judge judge_clip.pt \
        --evaluator composition.pt --data compositions.npz --split eval --out scores.json
    guidance-repro star-floor --tokenizer T.pt --data compositions.npz --split train --num 500 \
        --data-out data-train.npz --reconstruction-out reconstruction-train.npz

``star-sample`` draws one image per prompt (MJHQ protocol, star.md §5) for the first ``--num``
captions of a compositions split; the samples file's ``labels`` are the prompts' categories (the
class of the first item, star/text.py) and ``meta_json`` holds the sampler settings, the
seconds per image and the ``--tag`` values; ``--points`` samples many points in one process. ``--patch-nums`` samples a model on another schedule
than it was trained on (the resolution step with no fine-tuning, star/model.py
``change_schedule``). ``star-scores`` writes the CLIP score (raw cosine, judge CLIP) and the
per-category FID (composition evaluator features; reference = the split's images of the category).
``star-floor`` writes the two floors of the slice's FIDs as samples files evaluated like any point:
the first ``--num`` real images of a split (the evaluator's train-vs-eval FID at the sample count
of every point) and the tokenizer's reconstructions of the same images at 32 px (no generator can
beat the tokenizer it decodes through).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from guidance_repro.data.samples import parse_tags
from guidance_repro.errors import ReproError
from guidance_repro.sampling.cli_args import add_sampler_args
from guidance_repro.io import paired_outputs, save_npz


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ReproError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _threads(n: int) -> None:
    if n > 0:
        import torch
        torch.set_num_threads(n)


def _encode(args: argparse.Namespace) -> None:
    from guidance_repro.star.tasks import encode_split
    _threads(args.threads)
    arrays = encode_split(args.tokenizer, args.data, args.split, args.image_size,
                          _ints(args.patch_nums, "--patch-nums"), args.num)
    save_npz(args.out, **arrays)
    print(f"[star-encode] {len(arrays['codes'])} {args.split} images at {args.image_size}px -> "
          f"{arrays['codes'].shape[1]} tokens each -> {args.out}")


def sample_prompts(model, tokenizer, text, captions, guidance, scfg, seed: int, progress: bool = True):
    """uint8 images (n, H, W, C) for ``captions``, one per prompt; the CFG branch is the empty prompt."""
    import torch
    from tqdm import tqdm

    from guidance_repro.nn.toy_conv import tensor_to_images
    from guidance_repro.sampling import next_scale as ns
    from guidance_repro.star.model import TextCond
    g = torch.Generator().manual_seed(seed)
    images = []
    with torch.no_grad():
        empty = text.empty()
        for i in tqdm(range(0, len(captions), scfg.batch_size), desc="star sample", disable=not progress):
            cond = text.encode(captions[i:i + scfg.batch_size])
            B = len(cond.pooled)
            if guidance.doubled:
                cond = TextCond.cat([cond, TextCond(*(t.expand(B, *t.shape[1:]) for t in empty))])
            _, f_hat = ns.sample_scales(model, tokenizer, cond, B, guidance, scfg, g)
            images.append(tensor_to_images(tokenizer.decode_fhat(f_hat).cpu()))
    return np.concatenate(images)


def _point_list(args: argparse.Namespace) -> list[dict]:
    """The points of one ``star-sample`` run: ``--points`` (JSON list) or the single-point flags."""
    import json
    if not args.points:
        if not args.model or not args.out:
            raise ReproError("star-sample: give --model and --out, or --points")
        return [{"model": args.model, "cfg": args.cfg, "seed": args.seed, "patch_nums": args.patch_nums,
                 "tags": parse_tags(args.tag), "out": args.out}]
    try:
        points = json.loads(args.points)
    except json.JSONDecodeError as exc:
        raise ReproError(f"--points: not JSON ({exc})") from None
    if not isinstance(points, list) or not points:
        raise ReproError("--points: a non-empty JSON list of {model, cfg, seed, out[, patch_nums, tags]}")
    for i, pt in enumerate(points):
        missing = [k for k in ("model", "cfg", "seed", "out") if k not in pt]
        if missing:
            raise ReproError(f"--points[{i}]: missing {', '.join(missing)}")
    return [{"patch_nums": "", "tags": {}, **pt} for pt in points]


def _sample(args: argparse.Namespace) -> None:
    """One or more points in one process: the text encoder, the prompts and the tokenizer load
    once (starting Python with torch costs 1.5-2.7 s a job, more than sampling a point)."""
    from guidance_repro.data import compositions
    from guidance_repro.star.text import ToyTextEncoder, first_item_class
    _threads(args.threads)
    points = _point_list(args)
    text = ToyTextEncoder(args.text_encoder, "--text-encoder")
    d = compositions.load(args.data, args.split)
    if not 1 <= args.num <= len(d["captions"]):
        raise ReproError(f"--num: must be in 1..{len(d['captions'])} (captions of split {args.split}), got {args.num}")
    captions, cats = d["captions"][:args.num], first_item_class(d["item_class"])[:args.num]
    for pt in points:
        _sample_point(args, pt, text, captions, cats)


def _sample_point(args: argparse.Namespace, pt: dict, text, captions, cats) -> None:
    import torch

    from guidance_repro.data import samples as samples_io
    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.sampling.ar import SamplerConfig
    from guidance_repro.star.model import STAR, change_schedule
    from guidance_repro.star.tasks import load_star, tokenizer_at
    from guidance_repro.var.msvq import load_msvq
    model = load_star(pt["model"])
    if pt["patch_nums"]:
        state, cfg = change_schedule(model.state_dict(), model.cfg, _ints(str(pt["patch_nums"]), "--patch-nums"))
        model = STAR(cfg)
        model.load_state_dict(state)
        model.eval()
    if text.dim != model.cfg.text_dim or text.context_length != model.cfg.text_len:
        raise ReproError(f"--text-encoder: {args.text_encoder} gives {text.dim}-d x {text.context_length} "
                         f"text, {pt['model']} expects {model.cfg.text_dim}-d x {model.cfg.text_len}")
    down = load_msvq(args.tokenizer).cfg.downsample
    size = model.cfg.patch_nums[-1] * down
    tok = tokenizer_at(args.tokenizer, size, model.cfg.patch_nums)
    cfg_scale, seed = float(pt["cfg"]), int(pt["seed"])
    guidance = Guidance("cfg", cfg_scale) if cfg_scale != 0 else Guidance("none")
    scfg = SamplerConfig(temperature=1.0, top_k=args.top_k, top_p=args.top_p, batch_size=args.batch_size,
                         use_cache=True)
    t0 = time.perf_counter()
    images = sample_prompts(model, tok, text, captions, guidance, scfg, seed, not args.no_progress)
    seconds = time.perf_counter() - t0
    meta = {"family": "star", "sampler": "next-scale", "model_file": str(pt["model"]), "cfg": cfg_scale,
            "cfg_convention": "VAR ramp t = cfg*si/(S-1); logits = (1+t)c - t u; u = empty prompt",
            "guidance": guidance.method, "top_k": args.top_k, "top_p": args.top_p, "seed": seed,
            "num": args.num, "prompts": f"{args.split} captions 0..{args.num - 1}", "resolution": size,
            "patch_nums": list(model.cfg.patch_nums), "positions": model.cfg.positions,
            "threads": torch.get_num_threads(), "seconds": seconds, "seconds_per_image": seconds / args.num,
            "text_encoder_sha256": text.sha256, **{str(k): str(v) for k, v in pt["tags"].items()}}
    samples_io.write(pt["out"], images, cats, captions, meta)
    print(f"[star-sample] {args.num} images at {size}px, cfg {cfg_scale:g}, {seconds:.1f} s -> {pt['out']}")


def _floor(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.data import compositions
    from guidance_repro.data import samples as samples_io
    from guidance_repro.star.text import first_item_class
    from guidance_repro.var.msvq import load_msvq
    _threads(args.threads)
    d = compositions.load(args.data, args.split)
    if not 1 <= args.num <= len(d["captions"]):
        raise ReproError(f"--num: must be in 1..{len(d['captions'])} (images of split {args.split}), got {args.num}")
    images, captions = d["images"][:args.num], d["captions"][:args.num]
    cats = first_item_class(d["item_class"])[:args.num]
    tok = load_msvq(args.tokenizer)
    if tok.cfg.image_size != images.shape[1]:
        raise ReproError(f"--tokenizer: {args.tokenizer} works at {tok.cfg.image_size}px, the images are "
                         f"{images.shape[1]}px")
    with torch.no_grad():
        rec = np.asarray(tok.decode(tok.encode(images)))
    common = {"family": "star", "split": args.split, "num": args.num,
              "prompts": f"{args.split} images 0..{args.num - 1}"}
    samples_io.write(args.data_out, images, cats, captions, {**common, "kind": "data", "method": "data"})
    samples_io.write(args.reconstruction_out, rec, cats, captions,
                     {**common, "kind": "reconstruction", "method": "reconstruction",
                      "tokenizer": str(args.tokenizer), "patch_nums": list(tok.cfg.patch_nums)})
    print(f"[star-floor] {args.num} {args.split} images and their reconstructions -> {args.data_out}, "
          f"{args.reconstruction_out}")


def per_category_fid(gen_feats: np.ndarray, gen_cats: np.ndarray, ref_feats: np.ndarray,
                     ref_cats: np.ndarray, names) -> dict:
    """FID per category between generated and reference features of that category (None: < 2 images)."""
    from guidance_repro.metrics.fid import fid_from_features
    out = {}
    for c, name in enumerate(names):
        g, r = gen_feats[gen_cats == c], ref_feats[ref_cats == c]
        # fewer than 2 images of a category (tiny smoke runs): no covariance, no FID (null)
        fid = fid_from_features(g, r) if len(g) >= 2 and len(r) >= 2 else None
        out[str(name)] = {"fid": fid, "n": int(len(g)), "n_reference": int(len(r))}
    return out


def _scores(args: argparse.Namespace) -> None:
    """CLIP score and per-category FID of one or more samples files (one loaded judge, evaluator
    and reference: a point takes about a second, starting the process with open_clip about 5 s).
    Every point is computed before any file is written."""
    from guidance_repro.data import compositions
    from guidance_repro.data import samples as samples_io
    from guidance_repro.data.fashion_mnist import CAPTION_NAMES
    from guidance_repro.io import write_json
    from guidance_repro.metrics.clip_score import clip_score, load_scorer
    from guidance_repro.metrics.extractors import get_extractor
    from guidance_repro.star.text import first_item_class
    _threads(args.threads)
    pairs = paired_outputs(args.samples, args.out, "scores")
    scorer = load_scorer("toy-judge", args.judge)
    scorer.progress = False
    d = compositions.load(args.data, args.split)
    ex = get_extractor("toy-composition", args.evaluator)
    ref_f = np.asarray(ex.features(d["images"]), np.float32)
    ref_cats = first_item_class(d["item_class"])
    results = []
    for path, _ in pairs:
        s = samples_io.read(path)
        if s.captions is None:
            raise ReproError(f"{path}: no captions, no CLIP score")
        clip = clip_score(scorer, s.images, s.captions, "raw")
        gen_f = np.asarray(ex.features(s.images), np.float32)
        cats = per_category_fid(gen_f, s.labels, ref_f, ref_cats, CAPTION_NAMES)
        fids = [v["fid"] for v in cats.values() if v["fid"] is not None]
        results.append({"clip_score": clip["clip_score"], "clip_score_std": clip["std"],
                        "clip_variant": "raw", "clip_model": "toy-judge",
                        "clip_model_sha256": clip["model_sha256"], "n": clip["n"],
                        "category_fid": cats, "category_fid_mean": float(np.mean(fids)),
                        "evaluator": ex.name, "evaluator_sha256": ex.sha256,
                        "reference": f"{args.data}:{args.split}", "sampler": s.meta,
                        "samples": str(path)})
    for (_, out), result in zip(pairs, results):
        write_json(out, result)
        print(f"[star-scores] {result['samples']}: CLIP {result['clip_score']:.4f}, mean category "
              f"FID {result['category_fid_mean']:.2f} -> {out}")


def _check_paper(args: argparse.Namespace) -> None:
    """Paper tier (MJHQ-30K): every local input named in ``star.paper`` exists and loads."""
    from pathlib import Path

    from guidance_repro.data.mjhq import read_meta
    from guidance_repro.io import write_json
    from guidance_repro.star.text import SD21TextEncoder
    for key, path in (("star.paper.star_checkpoint", args.star), ("star.paper.vae_checkpoint", args.vae),
                      ("star.paper.mjhq_images", args.images)):
        if not path or not Path(path).exists():
            raise ReproError(f"{key}: {path!r} not found (local files only; nothing is downloaded)")
    if not args.meta or not Path(args.meta).is_file():
        raise ReproError(f"star.paper.mjhq_meta: {args.meta!r} not found")
    entries = read_meta(args.meta)
    enc = SD21TextEncoder(args.text_encoder, "star.paper.text_encoder_dir")
    write_json(args.out, {"prompts": len(entries), "text_encoder": str(args.text_encoder), "text_dim": enc.dim,
                          "star_checkpoint": args.star, "vae_checkpoint": args.vae})
    print(f"[star-check-paper] {len(entries)} MJHQ prompts, text encoder {enc.dim}-d -> {args.out}")


def _mechanism(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.io import write_json
    from guidance_repro.star.mechanism import rope_metrics, teacher_forced_losses
    from guidance_repro.star.tasks import load_star, load_tokens, tokenizer_at
    from guidance_repro.star.text import ToyTextEncoder
    model = load_star(args.model)
    if model.cfg.positions != "rope":
        raise ReproError(f"--model: {args.model} uses {model.cfg.positions!r} positions, not rope")
    out = rope_metrics(model.rope_angles, list(model.cfg.patch_nums))
    given = [bool(getattr(args, k)) for k in ("absolute", "codes", "tokenizer", "text_encoder")]
    if any(given) and not all(given):
        raise ReproError("star-mechanism: the teacher-forced losses need --absolute, --codes, --tokenizer "
                         "and --text-encoder together")
    if all(given):
        absolute = load_star(args.absolute)
        if absolute.cfg.positions != "absolute":
            raise ReproError(f"--absolute: {args.absolute} uses {absolute.cfg.positions!r} positions, not absolute")
        t = load_tokens(args.codes)
        rows = min(args.rows, len(t["codes"]))
        losses = teacher_forced_losses(model, absolute, tokenizer_at(args.tokenizer, t["image_size"], t["patch_nums"]),
                                       ToyTextEncoder(args.text_encoder, "--text-encoder"),
                                       torch.from_numpy(t["codes"][:rows]), [str(c) for c in t["captions"][:rows]])
        out = {**out, **losses, "protocol": {**out["protocol"], "rows": rows, "codes": str(args.codes)}}
    write_json(args.out, out)
    print(f"[star-mechanism] RoPE angles{' and teacher-forced losses' if all(given) else ''} of {args.model} -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("star-mechanism", help="mechanism metrics of the normalized 2-D RoPE of a STAR model")
    p.add_argument("--model", required=True, help="a STAR model file with positions: rope")
    p.add_argument("--absolute", default="", help="the ablation trained alike with positions: absolute")
    p.add_argument("--codes", default="", help="a STAR tokens file (rows and captions for the losses)")
    p.add_argument("--tokenizer", default="")
    p.add_argument("--text-encoder", default="")
    p.add_argument("--rows", type=int, default=32, help="first ROWS token rows")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_mechanism)

    p = sub.add_parser("star-check-paper", help="paper tier: check STAR's local files (MJHQ, SD-2.1 text encoder)")
    p.add_argument("--text-encoder", default="")
    p.add_argument("--star", default="")
    p.add_argument("--vae", default="")
    p.add_argument("--meta", default="")
    p.add_argument("--images", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_check_paper)

    p = sub.add_parser("star-encode", help="multi-scale tokens + captions of a compositions split at a size")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--data", required=True, help="compositions .npz")
    p.add_argument("--split", default="train")
    p.add_argument("--image-size", type=int, required=True, help="box-downsampled to this size")
    p.add_argument("--patch-nums", required=True, help="scale schedule ending at the latent side")
    p.add_argument("--num", type=int, default=0, help="first NUM images (0 = all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_encode)

    p = sub.add_parser("star-sample", help="one STAR sample per caption of a compositions split")
    p.add_argument("--points", default="", help="JSON list of points {model, cfg, seed, out[, patch_nums, "
                   "tags]} sampled in this one process (instead of --model/--cfg/--seed/--out/--tag)")
    p.add_argument("--model", default="")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--text-encoder", required=True)
    p.add_argument("--data", required=True, help="compositions .npz (the prompts)")
    p.add_argument("--split", default="eval")
    p.add_argument("--num", type=int, required=True)
    p.add_argument("--patch-nums", default="", help="sample on this schedule (zero-shot resolution step)")
    add_sampler_args(p, 0.0, "VAR-ramp cfg; 0 = no guidance", temperature=False, cache=False)
    # --points names every output itself: the shared sampler flags' --out is then not needed
    next(a for a in p._actions if a.dest == "out").required = False
    p.set_defaults(func=_sample)

    p = sub.add_parser("star-floor", help="the FID floors: real images of a split and their tokenizer reconstructions")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--data", required=True, help="compositions .npz")
    p.add_argument("--split", default="train")
    p.add_argument("--num", type=int, required=True, help="first NUM images (the points' sample count)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data-out", required=True)
    p.add_argument("--reconstruction-out", required=True)
    p.set_defaults(func=_floor)

    p = sub.add_parser("star-scores", help="CLIP score + per-category FID of STAR samples files")
    p.add_argument("--samples", required=True, nargs="+")
    p.add_argument("--judge", required=True, help="judge CLIP model file (toy-judge)")
    p.add_argument("--evaluator", required=True, help="composition evaluator model file")
    p.add_argument("--data", required=True, help="compositions .npz (references)")
    p.add_argument("--split", default="eval")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True, nargs="+", help="one per --samples file, same order")
    p.set_defaults(func=_scores)
