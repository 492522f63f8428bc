"""Benchmark: our FID path (reference-stats + evaluate commands) vs bare clean-fid compute_fid.

The same images (default 2 x 5000 grey 28x28) and the same small CNN feature extractor (random,
seeded, loaded from a plain-tensor checkpoint as the toy evaluators are) go through

* ours: ``reference-stats`` on the real set, then ``evaluate --metrics fid`` on the generated set
  (in-process ``cli.main``: reads the .npz files, hashes the checkpoint, extracts, writes outputs);
* clean-fid: ``compute_fid(fdir_fake, fdir_real, custom_feat_extractor=..., custom_fn_resize=...)``
  on PNG folders written from the same arrays (writing them is not timed).

Both run once to warm up, then ``--repeats`` times; the best time of each is compared.
Goal: ours / clean-fid <= 1.1. Prints and saves JSON to ``--out``.

    python benchmarks/fid_pipeline_vs_cleanfid.py [--num 5000 --size 28 --channels 1 --out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from cleanfid import fid as cleanfid
from PIL import Image

from guidance_repro import cli
from guidance_repro.io import save_npz, write_json
from guidance_repro.metrics.extractors import register_extractor
from guidance_repro.metrics.features import TorchExtractor, file_sha256
from guidance_repro.metrics.fid import cleanfid_version

KIND = "bench-cnn"
GOAL = 1.1


def build_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 64)).eval()


def load_net(checkpoint: Path) -> torch.nn.Module:
    net = build_net()
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=5000, help="images per set")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1, choices=(1, 3))
    ap.add_argument("--batch-size", type=int, default=128, help="same for both paths")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="results/benchmarks/fid_pipeline.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fid-bench-"))
    torch.manual_seed(0)
    ckpt = work / "cnn.pt"
    torch.save(build_net().state_dict(), ckpt)
    net = load_net(ckpt)

    def feature_fn(x: torch.Tensor) -> torch.Tensor:
        return net(x / 255.0)

    def factory(checkpoint: Path, device: torch.device) -> TorchExtractor:
        m = load_net(checkpoint)
        ext = TorchExtractor(KIND, file_sha256(checkpoint), args.size,
                             feature_fn=lambda x: m(x / 255.0), device=device,
                             batch_size=args.batch_size)
        ext.progress = False  # as clean-fid's verbose=False below
        return ext

    register_extractor(KIND, factory)

    rng = np.random.default_rng(0)
    shape = (args.num, args.size, args.size, args.channels)
    real = np.clip(rng.normal(128, 50, shape), 0, 255).astype(np.uint8)
    fake = np.clip(rng.normal(90, 70, shape), 0, 255).astype(np.uint8)
    labels = np.full(args.num, -1, dtype=np.int64)
    save_npz(work / "real.npz", images=real, labels=labels)
    save_npz(work / "fake.npz", images=fake, labels=labels)
    dirs = {}
    for name, arr in (("real", real), ("fake", fake)):
        folder = work / name
        folder.mkdir()
        for i, img in enumerate(arr):
            Image.fromarray(img[..., 0] if args.channels == 1 else img).save(folder / f"{i:05d}.png")
        dirs[name] = str(folder)

    common = ["--evaluator", KIND, "--evaluator-checkpoint", str(ckpt),
              "--batch-size", str(args.batch_size)]

    def ours() -> float:
        ref, out = work / "ref_stats.npz", work / "metrics.json"
        t0 = time.perf_counter()
        assert cli.main(["reference-stats", "--images", str(work / "real.npz"), "--out", str(ref),
                         *common]) == 0
        t1 = time.perf_counter()
        assert cli.main(["evaluate", "--samples", str(work / "fake.npz"), "--reference", str(ref),
                         "--metrics", "fid", "--out", str(out), *common]) == 0
        t2 = time.perf_counter()
        ours.evaluate_only = t2 - t1
        return json.loads(out.read_text())["fid"]

    def theirs() -> float:
        return float(cleanfid.compute_fid(dirs["fake"], dirs["real"], mode="clean",
                                          custom_feat_extractor=feature_fn,
                                          custom_fn_resize=lambda x: x,
                                          device=torch.device("cpu"), num_workers=0,
                                          batch_size=args.batch_size, verbose=False,
                                          use_dataparallel=False))

    times: dict[str, list[float]] = {"ours": [], "cleanfid": []}
    eval_only: list[float] = []
    fids = {"ours": ours(), "cleanfid": theirs()}  # warm-up (imports, caches, allocator)
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("cleanfid", theirs)):
            t0 = time.perf_counter()
            fids[name] = fn()
            times[name].append(time.perf_counter() - t0)
        eval_only.append(ours.evaluate_only)

    best = {k: min(v) for k, v in times.items()}
    ratio = best["ours"] / best["cleanfid"]
    result = {
        "benchmark": "fid_pipeline_vs_cleanfid",
        "ours_s": best["ours"], "cleanfid_s": best["cleanfid"], "ratio": ratio, "goal_ratio": GOAL,
        "meets_goal": ratio <= GOAL, "ours_evaluate_only_s": min(eval_only),
        "all_times_s": times, "fid_ours": fids["ours"], "fid_cleanfid": fids["cleanfid"],
        "fid_rel_diff": abs(fids["ours"] - fids["cleanfid"]) / max(abs(fids["cleanfid"]), 1e-12),
        "num_images_per_set": args.num, "image_shape": list(shape[1:]),
        "batch_size": args.batch_size, "repeats": args.repeats, "timing": "best of repeats, warm",
        "ours_includes": "reference-stats + evaluate --metrics fid (npz read, sha256, extract, write)",
        "cleanfid_includes": "compute_fid on two PNG folders (PNG decode, extract); PNG writing untimed",
        "extractor": "random 3-conv CNN, 64-d features", "device": "cpu",
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "clean_fid": cleanfid_version(), "python": platform.python_version(),
        "machine": platform.machine(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    shutil.rmtree(work)
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("ours_s", "cleanfid_s", "ratio", "meets_goal",
                                             "ours_evaluate_only_s", "fid_ours", "fid_cleanfid")},
                     indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
