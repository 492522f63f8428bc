"""The paper-tier VAR CCA task (``var-cca-official``): CCA fine-tuning from the official files.

The loss, the negatives and the alignment step are guidance/cca.py's (shared with LlamaGen and the
toy VAR task); this module supplies what the official VAR CCA trainer (thu-ml/CCA
``VAR_CCA_trainer.py``) does around them:
- policy and frozen reference from official ``var_d*.pth`` files (var/official.py; the reference
  defaults to the policy's file), the reference in train() mode (drop-path active in both);
- drop-path per depth as the CCA runs (var/tasks.py ``cca_drop_path``: none for d16), the model's
  own label dropout 0 (``cond_drop_rate=0``);
- images from an ImageNet train folder (var/train_images.py: short side 288 LANCZOS, random crop
  256, no flip), encoded on the fly by the official VQVAE outside autocast (VAR's trainer calls
  ``img_to_idxBl`` before its amp context): tokens over all scales and the teacher-forcing input;
- VAR's weight-decay groups (``var_param_groups``).
The optimiser, the lin0 schedule, the weight-decay annealing, clipping, accumulation and precision
are the loop's config (var/cca_official_commands.py sets them per depth).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.guidance.cca import AlignmentParams, alignment_step, effective_beta
from guidance_repro.var.model import VAR, sequence_logp
from guidance_repro.var.msvq import join_scales
from guidance_repro.var.official import load_official_var, load_official_vqvae
from guidance_repro.var.tasks import cca_drop_path, var_param_groups
from guidance_repro.var.train_images import TrainImages

# cca.md §1.3: λ per depth for guidance-free CCA (β 0.02 for all).
LAMBDA = {16: 50.0, 20: 50.0, 24: 100.0, 30: 1000.0}


class VAROfficialCCATask:
    """TrainTask ``var-cca-official``.

    params: ``depth`` (16, 20, 24, 30), ``beta`` (0.02), ``beta_mode`` (sequence), ``lam`` (the
    paper's per depth), ``uncond_ratio`` (0.1), ``method`` (cca | dpo | unlearning),
    ``class_dropout`` (0), ``drop_path`` ("paper" or a number), ``resize`` (288), ``crop`` (256),
    ``model_overrides`` (VARConfig fields over the size: tiny test files only).
    inputs: ``pretrained``, optional ``reference``, ``vae``, ``imagenet`` (train folder), optional
    ``labels_file`` (class order; default: sorted folder names).
    """

    name = "var-cca-official"

    def __init__(self, params: dict, inputs: dict):
        p = dict(params)
        depth = int(p.pop("depth", 0))
        if depth not in LAMBDA:
            raise ReproError(f"params.depth: one of {', '.join(map(str, LAMBDA))}, got {depth}")
        self.hp = AlignmentParams.pop(p, lam=LAMBDA[depth], class_dropout=0.0)
        drop_path = p.pop("drop_path", "paper")
        drop_path = cca_drop_path(depth) if drop_path == "paper" else drop_path
        if not isinstance(drop_path, (int, float)) or isinstance(drop_path, bool) or drop_path < 0:
            raise ReproError(f"params.drop_path: 'paper' or a number >= 0, got {drop_path!r}")
        resize, crop = int(p.pop("resize", 288)), int(p.pop("crop", 256))
        overrides = {**dict(p.pop("model_overrides", {}) or {}),
                     "drop_path": float(drop_path), "class_dropout": self.hp.class_dropout}
        if p:
            raise ReproError(f"params.{sorted(p)[0]}: unknown {self.name} parameter")
        for key in ("pretrained", "vae", "imagenet"):
            if key not in inputs:
                raise ReproError(f"inputs.{key}: the {self.name} task needs it")
        policy = load_official_var(inputs["pretrained"], depth, overrides)
        self.cfg = policy.cfg
        self.start = policy.state_dict()
        self.reference = (policy if "reference" not in inputs
                          else load_official_var(inputs["reference"], depth, overrides))
        if "reference" in inputs and self.reference.cfg != self.cfg:
            raise ReproError(f"inputs.reference: {inputs['reference']} is not a model of the policy's shape")
        self.reference.requires_grad_(False)
        self.reference.train()  # drop-path active in the reference too, as the official trainer
        self.vae = load_official_vqvae(inputs["vae"], self.cfg.patch_nums)
        self.vae.requires_grad_(False)
        v = self.vae.cfg
        if (v.codebook_size, v.code_dim) != (self.cfg.vocab_size, self.cfg.code_dim):
            raise ReproError(f"inputs.vae: {inputs['vae']} has V {v.codebook_size}, Cvae {v.code_dim}; "
                             f"the VAR needs {self.cfg.vocab_size}, {self.cfg.code_dim}")
        if v.image_size != crop:
            raise ReproError(f"params.crop: {crop} px, the schedule {list(self.cfg.patch_nums)} of "
                             f"the VQVAE needs {v.image_size} px images")
        self.data = TrainImages(inputs["imagenet"], inputs.get("labels_file"), resize, crop)
        if self.data.num_classes > self.cfg.num_classes:
            raise ReproError(f"inputs.imagenet: {self.data.num_classes} classes, the model has "
                             f"{self.cfg.num_classes}")
        self.beta_eff = effective_beta(self.hp.beta, self.hp.beta_mode, self.cfg.seq_len)
        self.depth, self.epoch, self.seed = depth, 0, 0

    def check_train_config(self, cfg) -> None:
        self.seed = cfg.seed  # keys the per-epoch crop draw

    def begin_step(self, step: int, epoch: int) -> None:
        self.epoch = epoch

    def build_model(self) -> nn.Module:
        if self.start is None:
            raise ReproError(f"{self.name}: build_model called twice (the start weights are freed after the first)")
        model = VAR(self.cfg)
        model.load_state_dict(self.start, strict=True)
        self.start = None
        return model

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.data)

    def get_batch(self, indices: np.ndarray):
        images, labels = self.data.draw(indices, self.epoch, self.seed)
        return {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)}

    def on_device(self, device) -> None:
        self.reference.to(device)
        self.vae.to(device)

    def param_groups(self, model: nn.Module, wd: float) -> list[dict]:
        return var_param_groups(model, wd)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, H, W) -> (tokens (B, L), teacher-forcing input (B, L − 1, Cvae)),
        in float32 whatever the loop's autocast."""
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            idx = self.vae.encode_indices(images.float() / 127.5 - 1)
            return join_scales(idx), self.vae.quantize.var_input(idx)

    def loss(self, model, batch, step):
        dev = next(model.parameters()).device
        codes, x_in = self.encode(batch["images"].to(dev))
        labels = batch["labels"].to(dev)
        x2, i2 = torch.cat([x_in, x_in]), torch.cat([codes, codes])
        return alignment_step(model, self.reference, labels, self.cfg.num_classes, self.hp,
                              self.beta_eff, lambda m, c2: sequence_logp(m, i2, x2, c2))

    def recipe(self, cfg, world: int) -> dict:
        """The official semantics this run reproduces, recorded with the weights."""
        micro = cfg.batch_size // (cfg.accumulation * world)
        return {"method": self.hp.method, "depth": self.depth, "beta": self.hp.beta,
                "beta_eff": self.beta_eff, "lam": self.hp.lam, "uncond_ratio": self.hp.uncond_ratio,
                "class_dropout": self.hp.class_dropout, "drop_path": self.cfg.drop_path_rate,
                "reference_mode": "train (drop-path active)",
                "negatives": f"labels rolled by -1 within the per-process micro-batch of {micro}",
                "accumulation": cfg.accumulation, "accumulation_reduce": cfg.accumulation_reduce,
                "world_size": world, "global_batch": cfg.batch_size, "precision": cfg.precision,
                "data": self.data.record(), "encoding": "official VQVAE on the fly, float32"}


def make_task(params: dict, inputs: dict) -> VAROfficialCCATask:
    return VAROfficialCCATask(params, inputs)
