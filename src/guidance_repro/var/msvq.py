"""A VAR-style multi-scale residual VQ-VAE (next-scale tokenizer), sized for 28x28 grey or 32x32 RGB.

What is VAR's here (cca.md §4.2, star.md §1):
- one codebook shared by every scale of a schedule ``patch_nums`` that ends at the full latent map
  (toy default 1,2,3,4,5,7 for the 7x7 map of a 28x28 image: L = 104 tokens; 32x32 RGB with
  ``channels`` of length 3 gives an 8x8 map, e.g. patch_nums 1,2,3,4,6,8);
- residual quantisation: at scale k the residual f − f̂ is area-downsampled to pn_k x pn_k and
  quantised, the codes are bicubic-upsampled back to the full map, passed through φ and added to f̂;
- φ: a small number of 3x3 convs shared across scales (VAR: 4 with ratio 0.5,
  φ(h) = (1 − r)·h + r·conv(h)); scale k uses the conv whose tick (VAR's quant.py: linspace(1/3K, 1 − 1/3K, K)
  for K = 4, linspace(1/2K, 1 − 1/2K, K) for every other K) is
  nearest to k/(S − 1);
- the losses: per scale, β·‖sg(f̂) − f‖² (commitment) + ‖f̂ − sg(f)‖² (codebook, φ), averaged over
  scales, and a straight-through f̂ for the decoder;
- teacher forcing (VAR's ``idxBl_to_var_input``): the input of scale k+1 is the cumulative f̂ after
  scale k, area-downsampled to pn_{k+1}; the sampler builds the same inputs incrementally
  (:meth:`MultiScaleQuantizer.next_input`).

Codebook: ``znorm`` picks codes by cosine similarity (VAR's ``using_znorm``) but adds the raw code
vector. VAR's released VQVAE uses plain L2 (``znorm=False``); the toy configs use cosine because
a short CPU training run keeps far more codes alive with it (the reason LlamaGen normalises too).
Left out at toy scale: the perceptual and GAN losses (as in llamagen/tokenizer.py). The conv encoder and
decoder are nn/toy_conv.py's, followed by VAR's 3x3 ``quant_conv``/``post_quant_conv``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.config import build_config
from guidance_repro.nn.toy_conv import Decoder, Encoder, VQConfig, images_to_tensor, tensor_to_images


@dataclass
class MSVQConfig:
    channels: tuple[int, ...] = (32, 64, 64)   # per level; len-1 stride-2 downsamplings
    res_blocks: int = 1
    codebook_size: int = 256
    code_dim: int = 16                          # VAR: Cvae = 32
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 7)
    phi_count: int = 4                          # VAR: share_quant_resi = 4
    phi_ratio: float = 0.5                      # VAR: quant_resi = 0.5
    znorm: bool = True                          # cosine code lookup (VAR using_znorm)
    commit_weight: float = 0.25                 # VAR beta
    in_channels: int = 1
    image_size: int = 28

    @classmethod
    def from_dict(cls, d: dict, key: str = "msvq") -> "MSVQConfig":
        cfg = build_config(cls, d, key, "tokenizer", tuple_keys=("channels", "patch_nums"))
        if cfg.image_size % cfg.downsample:
            raise ReproError(f"{key}.channels: image size {cfg.image_size} is not divisible by "
                             f"the downsampling factor {cfg.downsample}")
        pn = cfg.patch_nums
        if not pn or list(pn) != sorted(set(pn)) or pn[0] < 1 or pn[-1] != cfg.grid:
            raise ReproError(f"{key}.patch_nums: must increase strictly and end at the latent map "
                             f"side {cfg.grid}, got {list(pn)}")
        if cfg.codebook_size < 2 or cfg.code_dim < 1 or cfg.phi_count < 1:
            raise ReproError(f"{key}.codebook_size: needs >= 2 codes, code_dim >= 1, phi_count >= 1")
        return cfg

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample

    @property
    def seq_len(self) -> int:
        return sum(p * p for p in self.patch_nums)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["patch_nums"] = list(self.channels), list(self.patch_nums)
        return d

    def vq_config(self) -> VQConfig:
        return VQConfig(channels=self.channels, res_blocks=self.res_blocks,
                        codebook_size=self.codebook_size, code_dim=self.code_dim,
                        in_channels=self.in_channels, image_size=self.image_size)


def phi_index(si: int, num_scales: int, count: int) -> int:
    """Which shared φ conv scale ``si`` of ``num_scales`` uses (nearest tick to si/(S-1)).

    The ticks are VAR's (``PhiPartiallyShared``): margins 1/3K for K = 4, the released setting,
    and 1/2K (the centres of K equal bins) for any other K."""
    ratio = si / (num_scales - 1) if num_scales > 1 else 1.0
    margin = 1 / (3 * count) if count == 4 else 1 / (2 * count)
    ticks = np.linspace(margin, 1 - margin, count)
    return int(np.argmin(np.abs(ticks - ratio)))


class Phi(nn.Conv2d):
    """φ(h) = (1 − r)·h + r·conv3x3(h); a Conv2d subclass so the keys are ``weight``/``bias``."""

    def __init__(self, dim: int, ratio: float):
        super().__init__(dim, dim, 3, padding=1)
        self.ratio = ratio

    def forward(self, h):
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


class PhiShared(nn.Module):
    def __init__(self, cfg: MSVQConfig):
        super().__init__()
        self.qresi_ls = nn.ModuleList(Phi(cfg.code_dim, cfg.phi_ratio) for _ in range(cfg.phi_count))


class MultiScaleQuantizer(nn.Module):
    def __init__(self, cfg: MSVQConfig):
        super().__init__()
        self.cfg, self.pn = cfg, cfg.patch_nums
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        self.quant_resi = PhiShared(cfg)
        # VAR keeps an EMA of code hits per scale; here it is also the "codes used" statistic.
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(cfg.patch_nums), cfg.codebook_size))

    def phi(self, si: int) -> Phi:
        return self.quant_resi.qresi_ls[phi_index(si, len(self.pn), self.cfg.phi_count)]

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, d, h, w) -> code indices (B, h, w)."""
        zf = z.permute(0, 2, 3, 1)
        e = self.embedding.weight
        if self.cfg.znorm:
            return torch.einsum("bhwd,kd->bhwk", F.normalize(zf, dim=-1), F.normalize(e, dim=-1)).argmax(-1)
        d = zf.pow(2).sum(-1, keepdim=True) - 2 * zf @ e.t() + e.pow(2).sum(-1)
        return d.argmin(-1)

    def code_map(self, idx: torch.Tensor, si: int) -> torch.Tensor:
        """Scale-si codes (B, pn, pn) -> φ(upsampled code vectors) (B, d, H, W): its part of f̂."""
        h = self.embedding(idx).permute(0, 3, 1, 2)
        G = self.cfg.grid
        if idx.shape[-1] != G:
            h = F.interpolate(h, size=(G, G), mode="bicubic")
        return self.phi(si)(h)

    def forward(self, f: torch.Tensor):
        """f (B, d, H, W) -> (straight-through f̂, [idx per scale], loss)."""
        f_rest, f_hat = f.detach().clone(), torch.zeros_like(f)
        loss, idx_list = f.new_zeros(()), []
        for si, pn in enumerate(self.pn):
            z = F.interpolate(f_rest, size=(pn, pn), mode="area") if pn != self.cfg.grid else f_rest
            idx = self.nearest(z)
            h = self.code_map(idx, si)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            loss = loss + self.cfg.commit_weight * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f.detach())
            idx_list.append(idx)
            if self.training:
                with torch.no_grad():
                    hits = torch.bincount(idx.flatten(), minlength=self.cfg.codebook_size).float()
                    self.ema_vocab_hit_SV[si].mul_(0.99).add_(hits, alpha=0.01)
        f_st = f_hat.detach() - f.detach() + f  # straight-through: decoder grads reach the encoder
        return f_st, idx_list, loss / len(self.pn)

    def fhat_from_idx(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        return sum(self.code_map(idx, si) for si, idx in enumerate(idx_list))

    def next_input(self, si: int, f_hat: torch.Tensor, idx: torch.Tensor):
        """Sampler step: add scale si's codes to f̂; return (f̂, the next scale's input (B, pn², d)
        or None after the last scale)."""
        f_hat = f_hat + self.code_map(idx, si)
        if si == len(self.pn) - 1:
            return f_hat, None
        nxt = self.pn[si + 1]
        return f_hat, F.interpolate(f_hat, size=(nxt, nxt), mode="area").flatten(2).transpose(1, 2)

    def var_input(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing inputs of scales 1..S-1: (B, L - pn_0², d)."""
        B, G = idx_list[0].shape[0], self.cfg.grid
        f_hat = self.embedding.weight.new_zeros(B, self.cfg.code_dim, G, G)
        out = []
        for si in range(len(self.pn) - 1):
            f_hat, x = self.next_input(si, f_hat, idx_list[si])
            out.append(x)
        return torch.cat(out, 1)


def split_scales(codes: torch.Tensor, patch_nums) -> list[torch.Tensor]:
    """Flat tokens (B, L) -> [(B, pn, pn) per scale]."""
    out, pos = [], 0
    for pn in patch_nums:
        out.append(codes[:, pos:pos + pn * pn].reshape(-1, pn, pn))
        pos += pn * pn
    if pos != codes.shape[1]:
        raise ReproError(f"tokens of length {codes.shape[1]} do not fit patch_nums {list(patch_nums)} (L = {pos})")
    return out


def join_scales(idx_list: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([i.flatten(1) for i in idx_list], 1)


class MSVQModel(nn.Module):
    """Images in [-1, 1] (B, C, H, W) <-> per-scale token lists, flat (B, L) in scale order."""

    def __init__(self, cfg: MSVQConfig):
        super().__init__()
        self.cfg = cfg
        vq = cfg.vq_config()
        self.encoder, self.decoder = Encoder(vq), Decoder(vq)
        self.quant_conv = nn.Conv2d(cfg.code_dim, cfg.code_dim, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.code_dim, cfg.code_dim, 3, padding=1)
        self.quantize = MultiScaleQuantizer(cfg)

    def forward(self, x):
        f_hat, idx_list, vq_loss = self.quantize(self.quant_conv(self.encoder(x)))
        return self.decoder(self.post_quant_conv(f_hat)), idx_list, vq_loss

    def decode_fhat(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(f_hat))

    @property
    def device(self):
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 images (N, H, W[, C]) -> int64 tokens (N, L), scales concatenated coarse to fine."""
        x = images_to_tensor(images, self.cfg.vq_config())
        out = []
        for i in range(0, len(x), batch_size):
            f = self.quant_conv(self.encoder(x[i:i + batch_size].to(self.device)))
            out.append(join_scales(self.quantize(f)[1]).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.seq_len), np.int64)

    def check_tokens(self, codes) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if idx.ndim != 2 or idx.shape[1] != self.cfg.seq_len or (
                idx.numel() and (idx.min() < 0 or idx.max() >= self.cfg.codebook_size)):
            raise ReproError(f"tokens of shape {tuple(idx.shape)} do not fit L = {self.cfg.seq_len} "
                             f"tokens of {self.cfg.codebook_size} codes")
        return idx

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 256) -> np.ndarray:
        """Tokens (N, L) -> uint8 images (N, H, W, C)."""
        idx = self.check_tokens(codes)
        out = []
        for i in range(0, len(idx), batch_size):
            scales = split_scales(idx[i:i + batch_size].to(self.device), self.cfg.patch_nums)
            out.append(self.decode_fhat(self.quantize.fhat_from_idx(scales)).cpu())
        s = self.cfg.image_size
        return tensor_to_images(torch.cat(out) if out else torch.zeros(0, self.cfg.in_channels, s, s))

    @torch.no_grad()
    def var_input(self, codes: torch.Tensor) -> torch.Tensor:
        """Flat tokens (B, L) -> teacher-forcing inputs (B, L - pn_0², code_dim)."""
        return self.quantize.var_input(split_scales(codes.to(self.device), self.cfg.patch_nums))


def load_msvq(path: str | Path) -> MSVQModel:
    """Load a tokenizer model file written by the training loop (task ``msvq-tokenizer``)."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    obj = load_model_file(path)
    if "model" not in obj or "model_config" not in obj or obj.get("task") != MSVQTask.name:
        raise ReproError(f"{path}: not an msvq-tokenizer model file")
    model = MSVQModel(MSVQConfig.from_dict(obj["model_config"], key=f"{path}:model_config"))
    load_state_strict(model, obj["model"], path)
    return model.eval()


def load_images(inputs: dict, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of ``inputs['data']``: Fashion-MNIST (``{split}_images``) or any dataset
    .npz with a ``{split}_images`` array (e.g. the 32x32 RGB compositions; labels -1 if absent)."""
    if "data" not in inputs:
        raise ReproError("inputs.data: the tokenizer needs an image dataset artifact")
    path = Path(inputs["data"])
    try:
        with np.load(path) as z:
            images = z[f"{split}_images"]
            # captioned data sets (compositions) have no labels: -1
            labels = z[f"{split}_labels"] if f"{split}_labels" in z.files else np.full(len(images), -1)
    except (OSError, KeyError, ValueError) as exc:
        raise ReproError(f"{path}: no {split}_images array ({exc})") from None
    return images, labels.astype(np.int64)


class MSVQTask:
    """TrainTask ``msvq-tokenizer``: L2 + L1 reconstruction + the multi-scale VQ losses.

    params: the MSVQConfig fields, plus ``l1_weight`` (1.0) and ``train_subset`` (0 = all).
    inputs: ``data`` (its train split).
    """

    name = "msvq-tokenizer"

    def __init__(self, params: dict, inputs: dict):
        params = dict(params)
        self.l1_weight = float(params.pop("l1_weight", 1.0))
        subset = int(params.pop("train_subset", 0))
        self.cfg = MSVQConfig.from_dict(params, key="params")
        images, _ = load_images(inputs, "train")
        self.images = images[:subset] if subset else images
        images_to_tensor(self.images[:1], self.cfg.vq_config())  # shape check up front

    def build_model(self) -> nn.Module:
        return MSVQModel(self.cfg)

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.images)

    def get_batch(self, indices: np.ndarray):
        return images_to_tensor(self.images[indices], self.cfg.vq_config())

    def loss(self, model, batch, step):
        x = batch.to(next(model.parameters()).device)
        rec, idx_list, vq_loss = model(x)
        l2, l1 = F.mse_loss(rec, x), F.l1_loss(rec, x)
        used = torch.unique(idx_list[-1]).numel()
        return l2 + self.l1_weight * l1 + vq_loss, {"l2": l2.item(), "l1": l1.item(),
                                                    "vq": vq_loss.item(), "codes_used_last": used}


def make_msvq_task(params: dict, inputs: dict) -> MSVQTask:
    return MSVQTask(params, inputs)
