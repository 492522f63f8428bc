"""The ADM (OpenAI guided-diffusion) evaluation protocol, as the paper tier's CCA numbers use it.

What the ADM evaluator does with ``VIRTUAL_imagenet256_labeled.npz`` (cca.md §3 and its
"Verified" notes), and what this module does the same way:

- FID against the reference batch's STORED full-train-set statistics ``mu`` / ``sigma`` (pool_3,
  2048-d), not statistics recomputed from its 10k ``arr_0`` images;
- sFID against the stored ``mu_s`` / ``sigma_s`` of the spatial features (``mixed_6/conv``, first 7
  channels, flattened: 7·17·17 = 2023-d);
- precision / recall (k = 3) against the features of the ``arr_0`` images;
- IS over consecutive splits of 5000 samples (metrics/inception_score.py).

The network is a torch port, not the evaluator's TF graph: clean-fid's ``legacy_tensorflow`` mode
of NVlabs' TorchScript conversion of the same ``inception-2015-12-05`` graph (metrics/features.py;
a local file, nothing downloaded). That file's callable interface gives pool features
(``base(x, return_features=True)``) and, through ``base.output``, the logits; it does NOT give
``mixed_6/conv``: forward hooks are refused on TorchScript modules, and rebuilding its forward from
the submodules would mean re-implementing its internal TF-style resize, which cannot be checked
offline. So sFID is computed only when a *spatial-feature network* is given: a TorchScript file
called as ``net(x)`` on float32 (B, 3, H, W) in [0, 255] at the batch's resolution (the same input
the Inception takes) that returns (B, D_s) in the TF evaluator's order (17·17 positions x 7
channels, channel fastest), D_s matching ``mu_s``. Without one, the metrics JSON says
``"sfid": null`` with ``sfid_status: "not computed (...)"`` — never a number from elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from guidance_repro.data.adm_batch import batch_info, iter_images
from guidance_repro.data.imagenet import ReferenceBatch, load_reference_batch
from guidance_repro.errors import ReproError
from guidance_repro.metrics import fid as fid_mod
from guidance_repro.metrics.features import FeatureExtractor, as_nhwc_rgb, file_sha256
from guidance_repro.metrics.inception_score import ADM_SPLIT_SIZE, inception_score
from guidance_repro.metrics.precision_recall import ADM_K, precision_recall

TORCH_PORT_NOTE = (
    "Inception: the torch port of the TF evaluator's inception-2015-12-05 graph (NVlabs' TorchScript, "
    "run through clean-fid's legacy_tensorflow mode), not the OpenAI evaluator's TensorFlow graph. "
    "Known distance to the TF evaluator: no measured figure for this port was found in clean-fid's "
    "documentation, so the gap is unquantified; cca.md §5 expects +-0.1-0.3 FID run to run and larger "
    "shifts across evaluators and reference batches.")


class SpatialNetwork:
    """The sFID feature network (see the module docstring for its call signature)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 100):
        path = Path(path)
        if not path.is_file():
            raise ReproError(f"--sfid-network: {path} not found")
        try:
            self.net = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ReproError(f"--sfid-network: {path} is not a TorchScript file ({first})") from None
        self.path, self.device, self.batch_size = path, torch.device(device), batch_size
        self.sha256 = file_sha256(path)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        images = as_nhwc_rgb(images, str(self.path))
        out = []
        for i in range(0, len(images), self.batch_size):
            # contiguous NCHW: a permuted view would run the convs channels-last and round differently
            x = torch.from_numpy(images[i:i + self.batch_size]).permute(0, 3, 1, 2).contiguous()
            f = self.net(x.to(self.device, torch.float32))
            if f.ndim != 2 or len(f) != len(x):
                raise ReproError(f"--sfid-network: {self.path} returned {tuple(f.shape)} for {len(x)} images, "
                                 "expected (B, D_s)")
            out.append(f.float().cpu().numpy())
        return np.concatenate(out)


def _check_dims(ref: ReferenceBatch, pool_dim: int, spatial: SpatialNetwork | None, spatial_dim: int | None):
    if ref.mu.shape[0] != pool_dim:
        raise ReproError(f"{ref.path}: stored 'mu' is {ref.mu.shape[0]}-d, the evaluator's features are {pool_dim}-d")
    if spatial is not None and spatial_dim != ref.mu_s.shape[0]:
        raise ReproError(f"{ref.path}: stored 'mu_s' is {ref.mu_s.shape[0]}-d, {spatial.path} gives "
                         f"{spatial_dim}-d spatial features")


def activations(images: np.ndarray, extractor: FeatureExtractor, spatial: SpatialNetwork | None,
                want_logits: bool) -> dict:
    """Pool features, logits (when asked for) and spatial features (with a network) of ``images``."""
    if want_logits:
        feats, logits = extractor.features_and_logits(images)
    else:
        feats, logits = extractor.features(images), None
    return {"pool": np.asarray(feats, np.float32),
            "logits": None if logits is None else np.asarray(logits, np.float32),
            "spatial": None if spatial is None else spatial.features(images)}


def batch_activations(path: str | os.PathLike, extractor, spatial, want_logits: bool,
                      read_batch: int = 1000) -> dict:
    """:func:`activations` of an ADM batch's ``arr_0``, read ``read_batch`` images at a time."""
    parts = [activations(chunk, extractor, spatial, want_logits) for chunk in iter_images(path, read_batch)]
    return {k: (None if parts[0][k] is None else np.concatenate([p[k] for p in parts])) for k in parts[0]}


def reference_activations(ref: ReferenceBatch, extractor, read_batch: int = 1000) -> np.ndarray:
    """Pool features of the reference batch's ``arr_0`` (precision / recall)."""
    if ref.images is None:
        raise ReproError(f"{ref.path}: 'arr_0' not loaded")
    feats = [np.asarray(extractor.features(ref.images[i:i + read_batch]), np.float32)
             for i in range(0, len(ref.images), read_batch)]
    return np.concatenate(feats)


def adm_metrics(sample: dict, ref: ReferenceBatch, ref_pool: np.ndarray, *, pr_k: int = ADM_K,
                is_split_size: int = ADM_SPLIT_SIZE, device="cpu") -> dict:
    """FID / sFID against the stored statistics, IS, precision / recall against ``ref_pool``."""
    out: dict = {}
    mu, sigma = fid_mod.feature_stats(sample["pool"])
    out["fid"] = fid_mod.fid_from_stats(mu, sigma, ref.mu, ref.sigma)
    if sample["spatial"] is not None:
        mu_s, sigma_s = fid_mod.feature_stats(sample["spatial"])
        out["sfid"] = fid_mod.fid_from_stats(mu_s, sigma_s, ref.mu_s, ref.sigma_s)
        out["sfid_status"] = "computed against the stored mu_s / sigma_s"
    else:
        out["sfid"] = None
        out["sfid_status"] = ("not computed (no spatial-feature network given: the Inception TorchScript "
                              "file does not expose mixed_6/conv; see metrics/adm.py)")
    if sample["logits"] is not None:
        out["is_mean"], out["is_std"], splits = inception_score(sample["logits"], is_split_size)
        out["is_splits"] = splits
    out["precision"], out["recall"] = precision_recall(ref_pool, sample["pool"], k=pr_k, device=device)
    return out


def evaluate_batches(samples: list, ref_path: str | os.PathLike, extractor: FeatureExtractor,
                     spatial: SpatialNetwork | None = None, *, pr_k: int = ADM_K,
                     is_split_size: int = ADM_SPLIT_SIZE, device="cpu", read_batch: int = 1000,
                     sampler_meta: list | None = None) -> list[dict]:
    """The metrics JSON object of every ADM batch in ``samples`` (reference features computed once)."""
    for path in samples:  # every input is checked before the expensive part
        shape, _ = batch_info(path)
    ref = load_reference_batch(ref_path)
    want_logits = bool(getattr(extractor, "has_logits", False))
    probe = activations(ref.images[:2], extractor, spatial, False)
    _check_dims(ref, probe["pool"].shape[1], spatial,
                None if probe["spatial"] is None else probe["spatial"].shape[1])
    ref_pool = reference_activations(ref, extractor, read_batch)
    results = []
    for i, path in enumerate(samples):
        shape, _ = batch_info(path)
        if tuple(shape[1:3]) != tuple(ref.image_shape[1:3]):
            raise ReproError(f"{path}: {shape[1]}x{shape[2]} images, the reference batch {ref_path} holds "
                             f"{ref.image_shape[1]}x{ref.image_shape[2]}")
        sample = batch_activations(path, extractor, spatial, want_logits, read_batch)
        out = adm_metrics(sample, ref, ref_pool, pr_k=pr_k, is_split_size=is_split_size, device=device)
        protocol = {
            "protocol": "ADM (guided-diffusion evaluator): FID/sFID vs stored reference statistics, "
                        f"precision/recall vs reference arr_0 activations, IS split {is_split_size}",
            "evaluator": extractor.name, "evaluator_sha256": extractor.sha256, "inception_note": TORCH_PORT_NOTE,
            "sfid_network": None if spatial is None else str(spatial.path),
            "sfid_network_sha256": None if spatial is None else spatial.sha256,
            "reference": str(ref_path), "reference_sha256": file_sha256(ref_path),
            "reference_stats": "stored mu/sigma" + ("" if spatial is None else ", mu_s/sigma_s"),
            "reference_pr_images": int(len(ref_pool)), "samples": str(path), "num_samples": int(shape[0]),
            "resolution": [int(shape[1]), int(shape[2])], "pr_k": int(pr_k),
            "is_split_size": int(is_split_size),
            "fid_implementation": f"clean-fid {fid_mod.cleanfid_version()} frechet_distance",
        }
        if sampler_meta and sampler_meta[i]:
            protocol["sampler"] = sampler_meta[i]
        out["protocol"] = protocol
        results.append(out)
    return results
