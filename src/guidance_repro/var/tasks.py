"""Training tasks of the VAR family: ``var-pretrain`` (cross-entropy over all scales) and
``var-cca`` (CCA fine-tuning with the SAME loss module as LlamaGen: guidance/cca.py).

Both read multi-scale tokens (``msvq-encode`` output: ``codes`` (N, L), ``labels`` (N,)) and the
tokenizer, whose quantizer turns tokens into the teacher-forcing inputs batch by batch.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.guidance.cca import AlignmentParams, alignment_step, effective_beta
from guidance_repro.var.model import VAR, VARConfig, sequence_logp
from guidance_repro.var.msvq import load_msvq


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def load_tokens(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as z:
            codes, labels = z["codes"], z["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise ReproError(f"{path}: not a tokens file with 'codes' and 'labels' ({exc})") from None
    return np.asarray(codes, np.int64), np.asarray(labels, np.int64)


def load_var(path: str | Path) -> VAR:
    """Load a VAR model file written by the training loop (var-pretrain / var-cca)."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    obj = load_model_file(path)
    if "model" not in obj or "model_config" not in obj or obj.get("task") not in ("var-pretrain", "var-cca"):
        raise ReproError(f"{path}: not a var-pretrain / var-cca model file")
    model = VAR(VARConfig.from_dict(obj["model_config"], key=f"{path}:model_config"))
    load_state_strict(model, obj["model"], path)
    return model.eval()


def var_param_groups(model: nn.Module, wd: float) -> list[dict]:
    """VAR's filter_params: no weight decay on 1-D parameters (biases), position/level embeddings,
    the attention's scale_mul and the shared AdaLN's ada_gss (its nowd_keys)."""
    no = ("pos_", "lvl_embed", "scale_mul", "ada_gss")

    def decayed(name, p):
        return p.ndim >= 2 and not any(s in name for s in no)

    decay = [p for n, p in model.named_parameters() if decayed(n, p)]
    other = [p for n, p in model.named_parameters() if not decayed(n, p)]
    return [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]


def cca_drop_path(depth: int) -> float:
    """CCA's dropout per depth (cca.md §1.2): VAR's 0.1·depth/24, except d16 and smaller: none."""
    return 0.0 if depth <= 16 else 0.1 * depth / 24


class _VARData:
    """Tokens + tokenizer shared by both tasks; checks they fit the model config."""

    def _load_data(self, inputs: dict, cfg: VARConfig) -> None:
        for k in ("codes", "tokenizer"):
            if k not in inputs:
                raise ReproError(f"inputs.{k}: the {self.name} task needs the tokens and the msvq tokenizer")
        self.codes, self.labels = load_tokens(inputs["codes"])
        self.tokenizer = load_msvq(inputs["tokenizer"])
        self.tokenizer.requires_grad_(False)
        t = self.tokenizer.cfg
        if tuple(t.patch_nums) != tuple(cfg.patch_nums) or t.codebook_size != cfg.vocab_size or t.code_dim != cfg.code_dim:
            raise ReproError(f"params.model.patch_nums: the model (patch_nums {list(cfg.patch_nums)}, "
                             f"vocab {cfg.vocab_size}, code_dim {cfg.code_dim}) does not fit the tokenizer "
                             f"{inputs['tokenizer']} ({list(t.patch_nums)}, {t.codebook_size}, {t.code_dim})")
        if self.codes.ndim != 2 or self.codes.shape[1] != cfg.seq_len or len(self.codes) != len(self.labels):
            raise ReproError(f"{inputs['codes']}: codes {self.codes.shape} do not fit L = {cfg.seq_len}")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= cfg.num_classes):
            raise ReproError(f"params.model.num_classes: labels range {self.labels.min()}..{self.labels.max()}")

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.codes)

    def get_batch(self, indices: np.ndarray):
        codes = torch.from_numpy(self.codes[indices])
        return {"codes": codes, "labels": torch.from_numpy(self.labels[indices]),
                "x_in": self.tokenizer.var_input(codes).cpu()}

    def on_device(self, device) -> None:
        self.tokenizer.to(device)

    def param_groups(self, model: nn.Module, wd: float) -> list[dict]:
        return var_param_groups(model, wd)


class VARPretrainTask(_VARData):
    """TrainTask ``var-pretrain``: cross-entropy averaged over all L tokens, class dropout 0.1.

    params: ``model`` (VARConfig fields or ``size``; vocab_size, code_dim and patch_nums default to
    the tokenizer's). inputs: ``codes``, ``tokenizer``.
    """

    name = "var-pretrain"

    def __init__(self, params: dict, inputs: dict):
        params = dict(params)
        model = params.pop("model", {})
        if params:
            raise ReproError(f"params.{sorted(params)[0]}: unknown {self.name} parameter")
        if "tokenizer" in inputs:  # vocabulary, code dim and scales default to the tokenizer's
            t = load_msvq(inputs["tokenizer"]).cfg
            model = {"vocab_size": t.codebook_size, "code_dim": t.code_dim,
                     "patch_nums": list(t.patch_nums), **model}
        self.cfg = VARConfig.from_dict(model, key="params.model")
        self._load_data(inputs, self.cfg)

    def build_model(self) -> nn.Module:
        return VAR(self.cfg)

    def loss(self, model, batch, step):
        dev = next(model.parameters()).device
        codes, labels, x_in = batch["codes"].to(dev), batch["labels"].to(dev), batch["x_in"].to(dev)
        logits = model(unwrap(model).drop_labels(labels), x_in)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
        return loss, {"ce": loss.item()}


class VARCCATask(_VARData):
    """TrainTask ``var-cca``: CCA (or DPO / unlearning) fine-tuning of a pretrained VAR.

    The VAR recipe (cca.md §1.2): negatives = labels rolled by −1 within the micro-batch; with
    probability ``uncond_ratio`` (0.1) both labels become the null class; frozen reference in
    train() mode; class dropout 0 (cond_drop_rate 0.0); drop-path per depth (``drop_path``:
    "paper" = :func:`cca_drop_path`, or a number). Optimiser and lr schedule (AdamW 0.9/0.95,
    wd 0.05, lin0, grad clip 2.0) are the loop's config. The loss is guidance/cca.py's
    ``alignment_loss`` on per-sequence log-likelihoods summed over all L tokens, with β in the
    module's ``beta_mode`` convention (per_token: β_eff = β / L).
    inputs: ``pretrained`` (a var-pretrain file), ``codes``, ``tokenizer``.
    """

    name = "var-cca"

    def __init__(self, params: dict, inputs: dict):
        p = dict(params)
        self.hp = AlignmentParams.pop(p, lam=50.0, class_dropout=0.0)
        drop_path = p.pop("drop_path", "paper")
        if p:
            raise ReproError(f"params.{sorted(p)[0]}: unknown {self.name} parameter")
        if "pretrained" not in inputs:
            raise ReproError("inputs.pretrained: the var-cca task needs a var-pretrain model file")
        from guidance_repro.train.checkpoint import load_model_file
        base_file = load_model_file(inputs["pretrained"])
        if base_file.get("task") != "var-pretrain":
            raise ReproError(f"{inputs['pretrained']}: not a var-pretrain model file")
        cfg = dict(base_file["model_config"])
        if drop_path == "paper":
            drop_path = cca_drop_path(int(cfg["depth"]))
        if not isinstance(drop_path, (int, float)) or drop_path < 0:
            raise ReproError(f"params.drop_path: 'paper' or a number >= 0, got {drop_path!r}")
        cfg.update(class_dropout=self.hp.class_dropout, drop_path=float(drop_path))
        self.cfg = VARConfig.from_dict(cfg, key=f"{inputs['pretrained']}:model_config")
        self.init_state = base_file["model"]
        self.reference = self._fresh()
        self.reference.requires_grad_(False)
        self.reference.train()  # dropout (drop-path) active in the reference too, as the official code
        self.beta_eff = effective_beta(self.hp.beta, self.hp.beta_mode, self.cfg.seq_len)
        self._load_data(inputs, self.cfg)

    def _fresh(self) -> nn.Module:
        from guidance_repro.train.checkpoint import load_state_strict
        m = VAR(self.cfg)
        load_state_strict(m, copy.deepcopy(self.init_state), "pretrained")
        return m

    def build_model(self) -> nn.Module:
        return self._fresh()

    def on_device(self, device) -> None:
        super().on_device(device)
        self.reference.to(device)

    def loss(self, model, batch, step):
        dev = next(model.parameters()).device
        codes, labels, x_in = batch["codes"].to(dev), batch["labels"].to(dev), batch["x_in"].to(dev)
        x2, i2 = torch.cat([x_in, x_in]), torch.cat([codes, codes])
        return alignment_step(model, self.reference, labels, self.cfg.num_classes, self.hp,
                              self.beta_eff, lambda m, c2: sequence_logp(m, i2, x2, c2))


def make_pretrain_task(params: dict, inputs: dict) -> VARPretrainTask:
    return VARPretrainTask(params, inputs)


def make_cca_task(params: dict, inputs: dict) -> VARCCATask:
    return VARCCATask(params, inputs)
