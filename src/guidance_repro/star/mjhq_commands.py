"""``star-mjhq-sample``: one image per MJHQ-30K prompt with the official STAR weights (paper tier).

    guidance-repro star-mjhq-sample --star star_d30_512.pth --vae vae_ch160v4096z32.pth \
        --text-encoder /data/stable-diffusion-2-1 --meta meta_data.json --out-dir gen/ \
        --resolution 512 --cfg 4.0 --top-k 4096 --top-p 0.8 --batch-size 16 --device cuda

STAR's MJHQ protocol (star.md §3, §5): the prompt and the empty prompt "" through the frozen SD-2.1
CLIP text tower (star/text.py), next-scale sampling with VAR's CFG ramp t = cfg·si/(S − 1)
(sampling/next_scale.py), top-k 4096 (off) and top-p 0.8, the tokens decoded by VAR's VQVAE
(var/vqvae.py) and written as PNG, ⌊255·(x + 1)/2⌋ as STAR's scripts do, to
``<out-dir>/<category>/<key>.png`` (what metrics/mjhq_eval.py reads).

Resumable: the uniforms of every image's token draws come from a generator seeded by (``--seed``,
prompt key), so an image does not depend on which prompts share its batch (up to floating-point
differences between batch sizes), and prompts whose PNG exists are skipped (PNGs are written under
a temporary name and renamed). ``sampling.json``, written at the start, holds the settings; a run
with other settings in the same folder is refused. ``manifest.json`` (the completion marker the
DAG waits for) is removed at the start and written only when every prompt has its image; a
``--limit`` run (the first N prompts, category order) writes none.

Not STAR's: the released MJHQ script samples the 1024 px model with its mask sampler
(``w_mask=True``), which is not built here (star/official.py); ``--precision`` picks the
transformer's autocast dtype (STAR used fp16; fp32 by default here).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import time
from pathlib import Path

import numpy as np

from guidance_repro.errors import ReproError

SETTINGS, MANIFEST = "sampling.json", "manifest.json"
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}  # torch dtype names


def key_seed(seed: int, key: str) -> int:
    """A 63-bit generator seed of (run seed, prompt key)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") >> 1


def prompt_uniforms(seed: int, keys, length: int) -> torch.Tensor:
    """(len(keys), length) uniforms, row i from its own generator seeded by (seed, keys[i])."""
    import torch
    return torch.stack([torch.rand(length, generator=torch.Generator().manual_seed(key_seed(seed, k)))
                        for k in keys])


def image_path(out_dir: Path, entry) -> Path:
    return Path(out_dir) / entry.category / f"{entry.key}.png"


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] (B, 3, H, W) -> uint8 (B, H, W, 3), ⌊255·(x + 1)/2⌋ (STAR's scripts)."""
    import torch
    return ((x.float().clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from guidance_repro.io import atomic_path
    with atomic_path(path, suffix=".png.tmp") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def sample_mjhq(model, vae, text, entries, out_dir: Path, guidance, scfg, seed: int,
                precision: str = "fp32", progress: bool = True) -> int:
    """Write the missing ``<out_dir>/<category>/<key>.png`` of ``entries``; the number written."""
    import torch
    from tqdm import tqdm

    from guidance_repro.sampling import next_scale as ns
    from guidance_repro.star.model import TextCond
    dev = next(model.parameters()).device
    todo = [e for e in entries if not image_path(out_dir, e).is_file()]
    L = model.cfg.seq_len
    dtype = PRECISIONS[precision]  # the transformer only; the VQVAE decodes in fp32 (as STAR's scripts)
    autocast = contextlib.nullcontext() if dtype is None else torch.autocast(dev.type, dtype=getattr(torch, dtype))
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc="star mjhq", disable=not progress)
    with torch.no_grad():
        empty = text.empty().to(dev)
        for i in range(0, len(todo), scfg.batch_size):
            batch = todo[i:i + scfg.batch_size]
            B = len(batch)
            cond = text.encode([e.prompt for e in batch]).to(dev)
            if guidance.doubled:
                cond = TextCond.cat([cond, TextCond(*(t.expand(B, *t.shape[1:]) for t in empty))])
            u = prompt_uniforms(seed, [e.key for e in batch], L)
            with autocast:
                _, f_hat = ns.sample_scales(model, vae, cond, B, guidance, scfg, None, uniforms=u)
            images = to_uint8(vae.decode_fhat(f_hat.float()))
            for e, image in zip(batch, images):
                save_png(image, image_path(out_dir, e))
            bar.update(B)
    bar.close()
    return len(todo)


def _schedule(args) -> list[int]:
    from guidance_repro.var.vqvae import PATCH_NUMS
    if args.patch_nums:
        try:
            pn = [int(v) for v in args.patch_nums.split(",") if v.strip()]
        except ValueError:
            raise ReproError(f"--patch-nums: expected comma-separated integers, got {args.patch_nums!r}") from None
        if not pn or pn[-1] * 16 != args.resolution:
            raise ReproError(f"--patch-nums: the last scale x 16 must be --resolution {args.resolution}, got {pn}")
        return pn
    if args.resolution not in PATCH_NUMS:
        raise ReproError(f"--resolution: STAR's schedules exist for {', '.join(map(str, PATCH_NUMS))} px "
                         f"(or give --patch-nums), got {args.resolution}")
    return list(PATCH_NUMS[args.resolution])


def _device(name: str) -> torch.device:
    import torch
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ReproError(f"--device {name}: no CUDA device on this machine")
    return dev


def _check_settings(out_dir: Path, settings: dict) -> None:
    from guidance_repro.io import read_json, write_json
    path = out_dir / SETTINGS
    if path.is_file():
        old = read_json(path)
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            raise ReproError(f"{path}: this folder was sampled with {diff[0]}={old.get(diff[0])!r}, this run "
                             f"has {settings.get(diff[0])!r}; use another --out-dir or the same settings")
    else:
        write_json(path, settings)


def _sample(args: argparse.Namespace) -> None:
    from guidance_repro.data.mjhq import read_meta
    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.io import write_json
    from guidance_repro.metrics.features import file_sha256
    from guidance_repro.sampling.ar import SamplerConfig
    from guidance_repro.star.official import load_official_star
    from guidance_repro.star.text import load_text_encoder
    from guidance_repro.var.official import load_official_vqvae, official_vqvae_layout
    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)
    if args.limit < 0:
        raise ReproError(f"--limit: must be >= 0, got {args.limit}")
    dev = _device(args.device)
    pn = _schedule(args)
    entries = read_meta(args.meta)
    chosen = entries[:args.limit] if args.limit else entries
    scfg = SamplerConfig(top_k=args.top_k, top_p=args.top_p, batch_size=args.batch_size, use_cache=True)
    guidance = Guidance("cfg", args.cfg) if args.cfg != 0 else Guidance("none")
    model = load_official_star(args.star, pn, args.rope_norm, args.rope_theta, not args.no_logit_norm,
                               qk_scale_clamp=args.qk_scale_clamp)
    vae = load_official_vqvae(args.vae, pn)
    if (vae.cfg.code_dim, vae.cfg.codebook_size) != (model.cfg.code_dim, model.cfg.vocab_size):
        raise ReproError(f"--vae: {args.vae} has Cvae {vae.cfg.code_dim} and {vae.cfg.codebook_size} codes, "
                         f"the STAR model {args.star} expects {model.cfg.code_dim} and {model.cfg.vocab_size}")
    text = load_text_encoder(args.text_encoder_kind, args.text_encoder, "--text-encoder")
    if text.dim != model.cfg.text_dim:
        raise ReproError(f"--text-encoder: {args.text_encoder} gives {text.dim}-d text, the STAR model "
                         f"expects {model.cfg.text_dim}-d (encoder_proj)")
    out_dir = Path(args.out_dir)
    settings = {"star_checkpoint_sha256": file_sha256(args.star), "vae_checkpoint_sha256": file_sha256(args.vae),
                "text_encoder": {"kind": text.kind, "path": str(args.text_encoder), "sha256": text.sha256},
                "meta_sha256": file_sha256(args.meta), "resolution": args.resolution, "patch_nums": pn,
                "cfg": float(args.cfg), "top_k": args.top_k, "top_p": float(args.top_p), "seed": args.seed,
                "rope_norm": float(args.rope_norm), "rope_theta": float(args.rope_theta),
                "logit_norm": not args.no_logit_norm, "qk_scale_clamp": args.qk_scale_clamp,
                "precision": args.precision}
    _check_settings(out_dir, settings)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    model.to(dev)
    vae.to(dev)
    text.to(dev)
    t0 = time.perf_counter()
    written = sample_mjhq(model, vae, text, chosen, out_dir, guidance, scfg, args.seed, args.precision,
                          not args.no_progress)
    seconds = time.perf_counter() - t0
    missing = [e for e in chosen if not image_path(out_dir, e).is_file()]
    if missing:
        raise ReproError(f"{out_dir}: {len(missing)} prompts still have no image, e.g. {missing[0].key}")
    if args.limit:
        print(f"[star-mjhq-sample] {written} new images, first {len(chosen)} of {len(entries)} prompts "
              f"(--limit: no {MANIFEST}) -> {out_dir}")
        return
    write_json(out_dir / MANIFEST, {
        **settings, "images": len(chosen), "layout": "<category>/<key>.png",
        "uint8": "floor(255 (x + 1) / 2)", "cfg_convention": "VAR ramp t = cfg*si/(S-1); uncond = empty prompt",
        "sampler": "next-scale, KV cache, per-prompt seeded uniforms", "star_checkpoint": str(args.star),
        "vae_checkpoint": str(args.vae), "star_config": model.cfg.to_dict(), "vqvae_config": vae.cfg.to_dict(),
        "official_vqvae_layout": official_vqvae_layout(vae.cfg),
        "cross_attention_index0_bug": "not reproduced (star.md §1)", "mask_sampler": "not built (w_mask=False)",
        "written_this_run": written, "seconds_this_run": seconds,
        "seconds_per_image": seconds / written if written else None, "device": str(dev),
        "batch_size": args.batch_size})
    print(f"[star-mjhq-sample] {written} new images ({len(chosen)} prompts) at {args.resolution}px, "
          f"{seconds:.1f} s -> {out_dir}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("star-mjhq-sample", help="paper tier: one PNG per MJHQ-30K prompt with the official STAR weights")
    p.add_argument("--star", required=True, help="STAR checkpoint (star_d30_*.pth)")
    p.add_argument("--vae", required=True, help="VAR's vae_ch160v4096z32.pth")
    p.add_argument("--text-encoder", required=True, help="SD-2.1 folder (tokenizer/ + text_encoder/)")
    p.add_argument("--text-encoder-kind", default="sd21-clip", choices=("sd21-clip", "toy-clip"),
                   help="sd21-clip (STAR); toy-clip: a star-text-encoder file of the toy tier")
    p.add_argument("--meta", required=True, help="MJHQ-30K meta_data.json")
    p.add_argument("--out-dir", required=True, help="<out-dir>/<category>/<key>.png")
    p.add_argument("--resolution", type=int, default=512, help="256, 512 or 1024 (STAR's schedules)")
    p.add_argument("--patch-nums", default="", help="another scale schedule (e.g. the v1-era 12-scale 512)")
    p.add_argument("--rope-norm", type=float, default=64.0)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--no-logit-norm", action="store_true", help="model trained with enable_logit_norm=False")
    p.add_argument("--qk-scale-clamp", default="log", choices=("log", "exp"),
                   help="log: exp(min(s, log 100)) (VAR, star.md); exp: min(exp(s), log 100) (star/official_model.py)")
    p.add_argument("--cfg", type=float, default=4.0, help="VAR-ramp cfg; 0 = no guidance")
    p.add_argument("--top-k", type=int, default=4096, help="0 or >= V = off")
    p.add_argument("--top-p", type=float, default=0.8, help="1 = off")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS))
    p.add_argument("--limit", type=int, default=0, help="first N prompts only (no manifest)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sample)
