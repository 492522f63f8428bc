"""CLI commands of the MJHQ-30K evaluation (paper tier of STAR; ``metrics/mjhq_eval.py``).

    guidance-repro mjhq-pack --generated GEN --meta meta_data.json --category animals \
        --resolution 512 --out gen/animals.npz
    guidance-repro mjhq-reference --meta meta_data.json --images mjhq30k_imgs.zip --category animals \
        --resolution 512 --evaluator inception --evaluator-checkpoint inception.pt --out ref/animals.npz
    guidance-repro mjhq-features --samples gen/animals.npz --evaluator inception \
        --evaluator-checkpoint inception.pt --clip-model ViT-L-14 --clip-weights clip.safetensors \
        --out feats/animals.npz
    guidance-repro imagereward --samples gen/animals.npz ... --out ir/animals.json
    guidance-repro mjhq-table --reference ref/*.npz --features feats/*.npz --imagereward ir/*.json \
        --out mjhq.json --markdown mjhq.md --csv mjhq.csv --figure mjhq_fid.png
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from guidance_repro.io import atomic_path, save_npz, write_json
from guidance_repro.metrics.commands import add_extractor_args, build_extractor


def _pack(args: argparse.Namespace) -> None:
    from guidance_repro.data import samples as samples_io
    from guidance_repro.data.mjhq import read_meta
    from guidance_repro.metrics import mjhq_eval as mq
    entries = mq.category_entries(read_meta(args.meta), args.category)
    images = mq.load_generated(args.generated, entries, args.resolution)
    meta = {"dataset": "mjhq-30k", "category": args.category, "resolution": args.resolution,
            "generated_dir": str(args.generated), "keys": [e.key for e in entries]}
    samples_io.write(args.out, images, np.array([e.label for e in entries]),
                     captions=[e.prompt for e in entries], meta=meta)
    print(f"[mjhq-pack] {len(entries)} {args.category} images -> {args.out}")


def _reference(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from guidance_repro.data.mjhq import MJHQ
    from guidance_repro.metrics import mjhq_eval as mq
    extractor = build_extractor(args)
    extractor.progress = False
    feats = []
    with MJHQ(args.meta, args.images) as data:
        n = len(mq.category_entries(data.entries, args.category))
        with tqdm(total=n, desc=f"MJHQ {args.category} references", unit="img",
                  disable=args.no_progress) as bar:
            for images, _ in data.iter_images(args.resolution, args.chunk, args.category):
                feats.append(np.asarray(extractor.features(images), dtype=np.float32))
                bar.update(len(images))
    meta = {"dataset": "mjhq-30k", "category": args.category, "resolution": args.resolution,
            "count": n, "evaluator": extractor.name, "evaluator_sha256": extractor.sha256,
            "reference_prep": "torchvision Resize(r) + CenterCrop(r), bilinear (STAR's references)"}
    save_npz(args.out, features=np.concatenate(feats), meta_json=np.array(json.dumps(meta)))
    print(f"[mjhq-reference] {n} {args.category} references, {extractor.name} -> {args.out}")


def _features(args: argparse.Namespace) -> None:
    from guidance_repro.data import samples as samples_io
    from guidance_repro.errors import ReproError
    from guidance_repro.metrics.clip_score import load_scorer
    s = samples_io.read(args.samples)
    if s.captions is None or "category" not in s.meta:
        raise ReproError(f"{args.samples}: not an mjhq-pack file (needs captions and meta.category)")
    extractor = build_extractor(args)
    scorer = load_scorer(args.clip_model, args.clip_weights, args.device)
    feats = np.asarray(extractor.features(s.images), dtype=np.float32)
    cosine = (scorer.image_embeddings(s.images) * scorer.text_embeddings(s.captions)).sum(axis=1)
    meta = {"category": s.meta["category"], "resolution": s.meta.get("resolution"),
            "count": int(len(s.images)), "evaluator": extractor.name,
            "evaluator_sha256": extractor.sha256, "clip_model": scorer.name,
            "clip_sha256": scorer.sha256, "samples": str(args.samples)}
    save_npz(args.out, features=feats, clip_cosine=cosine.astype(np.float32),
             meta_json=np.array(json.dumps(meta)))
    print(f"[mjhq-features] {len(feats)} {meta['category']} images, CLIP score {cosine.mean():.4f} -> {args.out}")


def _table(args: argparse.Namespace) -> None:
    import csv

    from guidance_repro.metrics import mjhq_eval as mq
    result = mq.table(args.reference, args.features, args.imagereward)
    write_json(args.out, result)
    with atomic_path(args.markdown, suffix=".md.tmp") as tmp:
        tmp.write_text(mq.markdown(result))
    if args.csv:
        rows = [*result["categories"], {"category": "all", **result["overall"]}]
        with atomic_path(args.csv, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, ["category", "images", "fid", "clip_score", "imagereward"])
            w.writeheader()
            w.writerows(rows)
    if args.figure:
        mq.plot_categories(result, args.figure)
    o = result["overall"]
    print(f"[mjhq-table] {o['images']} images: FID {o['fid']:.2f}, CLIP {o['clip_score']:.4f} -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mjhq-pack", help="one category of generated MJHQ images -> a samples file")
    p.add_argument("--generated", required=True, help="folder of <category>/<key>.png, one per prompt")
    p.add_argument("--meta", required=True, help="MJHQ-30K meta_data.json")
    p.add_argument("--category", required=True)
    p.add_argument("--resolution", type=int, required=True, help="generation resolution")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_pack)

    p = sub.add_parser("mjhq-reference", help="features of one category's MJHQ references at a resolution")
    p.add_argument("--meta", required=True)
    p.add_argument("--images", required=True, help="mjhq30k_imgs.zip or its unpacked folder")
    p.add_argument("--category", required=True)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--chunk", type=int, default=250, help="references decoded per batch")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True)
    add_extractor_args(p)
    p.set_defaults(func=_reference)

    p = sub.add_parser("mjhq-features", help="FID features + CLIP cosines of an mjhq-pack file")
    p.add_argument("--samples", required=True)
    p.add_argument("--clip-model", default="ViT-L-14", help="open_clip architecture (or toy-judge)")
    p.add_argument("--clip-weights", required=True, help="local weights file (evaluation.clip.weights)")
    p.add_argument("--out", required=True)
    add_extractor_args(p)
    p.set_defaults(func=_features)

    p = sub.add_parser("mjhq-table", help="per-category and overall MJHQ FID / CLIP score / ImageReward")
    p.add_argument("--reference", nargs="+", required=True)
    p.add_argument("--features", nargs="+", required=True)
    p.add_argument("--imagereward", nargs="*", default=[], help="<category>.json of `imagereward`")
    p.add_argument("--out", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--csv", default="")
    p.add_argument("--figure", default="")
    p.set_defaults(func=_table)
