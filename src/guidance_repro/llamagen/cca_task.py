"""The LlamaGen CCA fine-tuning task (``llamagen-cca``): the GPT side of guidance/cca.py's method.

The loss, the negatives and the alignment step are guidance/cca.py's, shared with VAR and STAR; this
module supplies what is LlamaGen's: the pretrained GPT and its frozen reference copy, the codes, the
per-sequence log-likelihoods, and the optional recorded reference pass (llamagen/cca_reference.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.guidance.cca import AlignmentParams, alignment_conditions, alignment_step, effective_beta
from guidance_repro.llamagen.cca_reference import ReferenceCache, input_digests
from guidance_repro.llamagen.crop_codes import CropCodes
from guidance_repro.llamagen.model import GPT, GPTConfig, check_codes, load_codes, load_gpt, sequence_logp


class LlamaGenCCATask:
    """TrainTask ``llamagen-cca``: fine-tune a pretrained GPT with CCA (or DPO / unlearning).

    params: ``beta`` (0.02), ``beta_mode`` (sequence | per_token), ``lam`` (1000), ``uncond_ratio``
    (0.1; the README value, pass it explicitly), ``method`` (cca | dpo | unlearning),
    ``class_dropout`` (1e-5, the model's own label dropout during fine-tuning, as the official
    DDP script), ``dropout`` (keep | off: keep the model's token/resid/ffn dropout, official
    ``--keep_dropout``). Random draws use the global torch RNG (the loop reseeds it per step/rank).
    inputs: ``pretrained`` (a llamagen-pretrain model file) and the codes (llamagen.model.load_codes);
    optional ``reference_logp``: the reference's log-likelihoods recorded for this data order
    (``cca-reference-logp``; dropout off only), used instead of running the reference.
    The optimiser (AdamW 0.9/0.95, wd 0.05, lr 1e-5 constant, grad clip 1.0) is the loop's config.

    Official files (cca.md §4.1): with ``official_size`` (B, L, XL, XXL, 3B) ``pretrained`` (and the
    optional ``reference``, default the same file) may be official ``c2i_*_384.pt`` files or CCA's
    releases (any container llamagen.official accepts; bf16 upcast to float32 unless
    ``upcast: false``); ``image_size`` (384) sets the grid, ``model_overrides`` smaller widths
    (test files). A loop model file is recognised by its 'model_config' and needs no size.
    ``codes`` is the merged codes file (llamagen/crop_codes.py): one of the 20 crop x flip
    variants per sample per epoch, seeded by (train.seed, epoch, sample index).
    """

    name = "llamagen-cca"

    def __init__(self, params: dict, inputs: dict):
        p = dict(params)
        self.hp = AlignmentParams.pop(p, lam=1000.0, class_dropout=1e-5)
        self.dropout = str(p.pop("dropout", "keep"))
        if self.dropout not in ("keep", "off"):
            raise ReproError(f"params.dropout: must be 'keep' or 'off', got {self.dropout!r}")
        official_size = p.pop("official_size", None)
        image_size = int(p.pop("image_size", 384))
        overrides = dict(p.pop("model_overrides", {}) or {})
        upcast = p.pop("upcast", True)
        if p:
            raise ReproError(f"params.{sorted(p)[0]}: unknown {self.name} parameter")
        if "pretrained" not in inputs:
            raise ReproError("inputs.pretrained: the llamagen-cca task needs a pretrained GPT model file")
        base = load_start(inputs["pretrained"], official_size, image_size, overrides, upcast)
        cfg = base.cfg.to_dict()
        cfg["class_dropout"] = self.hp.class_dropout
        if self.dropout == "off":
            cfg.update(token_dropout=0.0, resid_dropout=0.0, ffn_dropout=0.0)
        self.cfg = GPTConfig.from_dict(cfg)
        self.reference = GPT(self.cfg)  # the frozen copy p_phi
        ref = base if "reference" not in inputs else load_start(inputs["reference"], official_size,
                                                                image_size, overrides, upcast)
        self.reference.load_state_dict(ref.state_dict(), strict=True)
        self.start = {k: v.detach().clone() for k, v in base.state_dict().items()}  # the policy's
        del base, ref
        self.reference.requires_grad_(False)
        self.reference.train()  # dropout active in the reference too, as the official script
        self.beta_eff = effective_beta(self.hp.beta, self.hp.beta_mode, self.cfg.seq_len)
        if "codes" in inputs:
            self.data = CropCodes(inputs["codes"])
            self.data.check(self.cfg.vocab_size, self.cfg.num_classes, self.cfg.seq_len)
        else:  # the toy tier: images encoded here, one variant each
            codes, labels = load_codes(inputs)
            check_codes(codes, labels, self.cfg)
            self.data = _InMemoryCodes(codes, labels)
        self.official_size = official_size
        self.epoch, self.seed = 0, 0
        self.inputs = inputs
        self.cache = None
        if "reference_logp" in inputs:
            if self.dropout != "off":
                raise ReproError("inputs.reference_logp: recorded reference log-likelihoods need "
                                 "params.dropout 'off'")
            self.cache = ReferenceCache(inputs["reference_logp"], self.reference_settings())

    def reference_settings(self) -> dict:
        """What decides the conditions and the reference's numbers (recorded and checked)."""
        return {"uncond_ratio": self.hp.uncond_ratio, "class_dropout": self.hp.class_dropout,
                "dropout": self.dropout, **input_digests(self.inputs)}

    def check_train_config(self, cfg) -> None:
        self.seed = cfg.seed  # keys the per-epoch crop draw
        if self.cache is not None:
            self.cache.check_train_config(cfg)

    def begin_step(self, step: int, epoch: int) -> None:
        self.epoch = epoch

    def fsdp_units(self, model: nn.Module) -> list[nn.Module]:
        return list(model.layers)  # one shard unit per transformer block, as the official wrapping

    def shard_frozen(self, shard) -> None:
        shard(self.reference)  # the reference is sharded like the policy (ZeRO-3 for both)

    def recipe(self, cfg, world: int) -> dict:
        """The official semantics this run reproduces (or departs from), recorded with the weights."""
        micro = cfg.batch_size // (cfg.accumulation * world)
        return {"method": self.hp.method, "beta": self.hp.beta, "beta_eff": self.beta_eff,
                "lam": self.hp.lam, "uncond_ratio": self.hp.uncond_ratio,
                "class_dropout": self.hp.class_dropout, "dropout": self.dropout,
                "reference_mode": "train (dropout active)" if self.dropout == "keep" else "train (no dropout)",
                "negatives": f"labels rolled by -1 within the per-process micro-batch of {micro}",
                "accumulation_reduce": cfg.accumulation_reduce,
                "gradient_scale": cfg.accumulation if cfg.accumulation_reduce == "sum" else 1,
                "accumulation": cfg.accumulation, "world_size": world, "global_batch": cfg.batch_size,
                "parallel": cfg.parallel if world > 1 else "single",
                "codes_variants": self.data.variants, "official_size": self.official_size}

    def conditions(self, model: nn.Module, labels: torch.Tensor):
        return alignment_conditions(model, labels, self.cfg.num_classes, self.hp)

    def reference_logp(self, codes: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        self.reference.train()
        with torch.no_grad():
            return sequence_logp(self.reference, torch.cat([codes, codes]), c2)

    def _fresh(self) -> nn.Module:
        m = GPT(self.cfg)
        if self.start is None:
            raise ReproError("llamagen-cca: build_model called twice (the start weights are freed "
                             "after the first, so 3B-sized runs hold no spare copy)")
        m.load_state_dict(self.start, strict=True)
        self.start = None
        return m

    def build_model(self) -> nn.Module:
        return self._fresh()

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.data)

    def get_batch(self, indices: np.ndarray):
        codes, labels = self.data.draw(indices, self.epoch, self.seed)
        return {"codes": torch.from_numpy(codes), "labels": torch.from_numpy(labels),
                "indices": torch.from_numpy(np.asarray(indices, np.int64))}

    def on_device(self, device) -> None:
        self.reference.to(device)

    def param_groups(self, model: nn.Module, wd: float) -> list[dict]:
        decay = [p for p in model.parameters() if p.ndim >= 2]  # official: wd on >= 2-D params
        other = [p for p in model.parameters() if p.ndim < 2]
        return [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]

    def loss(self, model, batch, step):
        dev = next(model.parameters()).device
        codes, labels = batch["codes"].to(dev), batch["labels"].to(dev)
        x2 = torch.cat([codes, codes])
        cached = None
        if self.cache is not None:
            def cached(c2):
                return self.cache.lookup(step, batch["indices"].cpu().numpy(), c2)
        return alignment_step(model, self.reference, labels, self.cfg.num_classes, self.hp,
                              self.beta_eff, lambda m, c2: sequence_logp(m, x2, c2), cached)


class _InMemoryCodes:
    """Codes encoded in memory (toy tier): one variant per image, the CropCodes interface."""

    variants = 1

    def __init__(self, codes: np.ndarray, labels: np.ndarray):
        self.codes, self.labels = codes, labels

    def __len__(self) -> int:
        return len(self.codes)

    def draw(self, indices, epoch: int, seed: int):
        return self.codes[indices], self.labels[indices]


def load_start(path, official_size: str | None, image_size: int, overrides: dict, upcast) -> GPT:
    """A GPT to start from: a loop model file (it has 'model_config'), else an official file,
    which needs ``official_size``."""
    from guidance_repro.llamagen.official import load_official_gpt, read_torch_file
    obj = read_torch_file(path)
    if "model_config" in obj:
        return load_gpt(path)
    if official_size is None:
        raise ReproError(f"{path}: an official LlamaGen file (no 'model_config'); set "
                         f"params.official_size (B, L, XL, XXL, 3B) to read it")
    if not isinstance(upcast, bool):
        raise ReproError(f"params.upcast: must be true or false, got {upcast!r}")
    model = load_official_gpt(None, official_size, image_size, state_dict=obj, upcast=upcast, **overrides)
    return model


def make_llamagen_cca_task(params: dict, inputs: dict) -> LlamaGenCCATask:
    return LlamaGenCCATask(params, inputs)
