"""A LlamaGen-style VQ tokenizer sized for 28x28 grayscale images (Fashion-MNIST).

What is LlamaGen's here: a conv encoder/decoder around a vector quantizer whose codebook has a low
code dimension (8) and is L2-normalised (codes and encoder outputs are compared on the unit sphere,
which keeps most codes in use), a codebook loss plus a 0.25-weighted commitment loss, and the
straight-through estimator. What is left out at toy scale, on purpose: the perceptual (LPIPS) and
GAN losses (no pretrained VGG offline, and L1+L2 already gives sharp 28x28 reconstructions).
The conv encoder/decoder and the image conversions are nn/toy_conv.py's (VAR's toy tokenizer
uses the same halves).

Default sizes: two stride-2 downsamplings, so a 28x28 image becomes 7x7 = 49 tokens; 512 codes
(measured: 2 epochs, batch 64, AdamW lr 2e-3 cosine -> test PSNR 23.4 dB, all 512 codes used).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.toy_conv import Decoder, Encoder, VQConfig, images_to_tensor, tensor_to_images


class Quantizer(nn.Module):
    """Nearest code on the unit sphere; codebook + commitment losses; straight-through gradient."""

    def __init__(self, codebook_size: int, code_dim: int, commit_weight: float = 0.25,
                 codebook_weight: float = 1.0):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.commit_weight, self.codebook_weight = commit_weight, codebook_weight

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=-1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, d, h, w) -> code indices (B, h, w)."""
        zf = F.normalize(z.permute(0, 2, 3, 1), dim=-1)
        # On the unit sphere the nearest code (L2) is the one with the largest dot product.
        return torch.einsum("bhwd,kd->bhwk", zf, self.codebook()).argmax(-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> normalised latents (B, d, h, w), contiguous: a permuted view
        is channels-last, and the convolutions after it would then run (and round) differently
        from the official decoder, which gets a contiguous tensor."""
        return F.embedding(idx, self.codebook()).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor):
        zn = F.normalize(z, dim=1)
        idx = self.indices(z)
        zq = self.lookup(idx)
        codebook_loss = F.mse_loss(zq, zn.detach())
        commit_loss = F.mse_loss(zn, zq.detach())
        zq_st = zn + (zq - zn).detach()  # straight-through estimator
        loss = self.codebook_weight * codebook_loss + self.commit_weight * commit_loss
        return zq_st, idx, loss


class VQModel(nn.Module):
    """Images in [-1, 1], shape (B, C, H, W) <-> code grids (B, h, w)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)  # built in this order: the seeded initial weights depend on it
        self.quantize = Quantizer(cfg.codebook_size, cfg.code_dim, cfg.commit_weight, cfg.codebook_weight)
        self.decoder = Decoder(cfg)

    def forward(self, x):
        zq, idx, vq_loss = self.quantize(self.encoder(x))
        return self.decoder(zq), idx, vq_loss

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantize.lookup(idx))

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 images (N, H, W) or (N, H, W, C) -> int64 codes (N, h, w)."""
        x = images_to_tensor(images, self.cfg)
        dev = next(self.parameters()).device
        out = [self.quantize.indices(self.encoder(x[i:i + batch_size].to(dev))).cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy().astype(np.int64) if out else np.zeros((0, self.cfg.grid, self.cfg.grid), np.int64)

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 256) -> np.ndarray:
        """Codes (N, h, w) or (N, h*w) -> uint8 images (N, H, W, C)."""
        idx = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        g = self.cfg.grid
        if idx.ndim == 2:
            idx = idx.reshape(len(idx), g, g)
        if tuple(idx.shape[1:]) != (g, g) or (idx.numel() and (idx.min() < 0 or idx.max() >= self.cfg.codebook_size)):
            raise ReproError(f"codes of shape {tuple(idx.shape)} do not fit a {g}x{g} grid of "
                             f"{self.cfg.codebook_size} codes")
        dev = next(self.parameters()).device
        out = [self.decode_indices(idx[i:i + batch_size].to(dev)).cpu() for i in range(0, len(idx), batch_size)]
        x = torch.cat(out) if out else torch.zeros(0, self.cfg.in_channels, self.cfg.image_size, self.cfg.image_size)
        return tensor_to_images(x)


def load_vq(path: str | Path) -> VQModel:
    """Load a tokenizer model file written by the training loop (task ``vq-tokenizer``)."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    obj = load_model_file(path)
    if "model" not in obj or "model_config" not in obj:
        raise ReproError(f"{path}: not a model file (needs 'model' and 'model_config')")
    model = VQModel(VQConfig.from_dict(obj["model_config"], key=f"{path}:model_config"))
    load_state_strict(model, obj["model"], path)
    return model.eval()


def write_codes(data: str | Path, tokenizer: str | Path, out: str | Path, split: str = "train") -> None:
    """Encode one split of the Fashion-MNIST artifact once: ``out`` (.npz) holds ``codes`` int64
    (N, h, w) and ``labels`` int64 (N,), the ``codes`` input of the llamagen tasks."""
    from guidance_repro.data.fashion_mnist import load
    from guidance_repro.io import save_npz
    images, labels = load(data).split(split)
    codes = load_vq(tokenizer).encode(images)
    save_npz(out, codes=codes, labels=np.asarray(labels, dtype=np.int64))


class VQTask:
    """TrainTask ``vq-tokenizer``: L2 + L1 reconstruction + codebook/commitment losses.

    params: the VQConfig fields, plus ``l1_weight`` (default 1.0) and ``train_subset`` (0 = all).
    inputs: ``data`` = the prepared Fashion-MNIST artifact (its train split is used).
    """

    name = "vq-tokenizer"

    def __init__(self, params: dict, inputs: dict):
        params = dict(params)
        self.l1_weight = float(params.pop("l1_weight", 1.0))
        subset = int(params.pop("train_subset", 0))
        self.cfg = VQConfig.from_dict(params, key="params")
        if "data" not in inputs:
            raise ReproError("inputs.data: the vq-tokenizer task needs the Fashion-MNIST artifact")
        from guidance_repro.data.fashion_mnist import load
        images = load(inputs["data"]).train_images
        self.images = images[:subset] if subset else images

    def build_model(self) -> nn.Module:
        return VQModel(self.cfg)

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.images)

    def get_batch(self, indices: np.ndarray):
        return images_to_tensor(self.images[indices], self.cfg)

    def loss(self, model, batch, step):
        x = batch.to(next(model.parameters()).device)
        rec, idx, vq_loss = model(x)
        l2, l1 = F.mse_loss(rec, x), F.l1_loss(rec, x)
        used = torch.unique(idx).numel()
        return l2 + self.l1_weight * l1 + vq_loss, {"l2": l2.item(), "l1": l1.item(),
                                                    "vq": vq_loss.item(), "codes_used": used}


def make_vq_task(params: dict, inputs: dict) -> VQTask:
    return VQTask(params, inputs)
