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
    """

    name = "llamagen-cca"

    def __init__(self, params: dict, inputs: dict):
        p = dict(params)
        self.hp = AlignmentParams.pop(p, lam=1000.0, class_dropout=1e-5)
        self.dropout = str(p.pop("dropout", "keep"))
        if p:
            raise ReproError(f"params.{sorted(p)[0]}: unknown {self.name} parameter")
        if self.dropout not in ("keep", "off"):
            raise ReproError(f"params.dropout: must be 'keep' or 'off', got {self.dropout!r}")
        if "pretrained" not in inputs:
            raise ReproError("inputs.pretrained: the llamagen-cca task needs a pretrained GPT model file")
        base = load_gpt(inputs["pretrained"])
        cfg = base.cfg.to_dict()
        cfg["class_dropout"] = self.hp.class_dropout
        if self.dropout == "off":
            cfg.update(token_dropout=0.0, resid_dropout=0.0, ffn_dropout=0.0)
        self.cfg = GPTConfig.from_dict(cfg)
        self.reference = GPT(self.cfg)  # the frozen copy p_phi; the policy starts from its weights
        self.reference.load_state_dict(base.state_dict(), strict=True)
        del base
        self.reference.requires_grad_(False)
        self.reference.train()  # dropout active in the reference too, as the official script
        self.beta_eff = effective_beta(self.hp.beta, self.hp.beta_mode, self.cfg.seq_len)
        self.codes, self.labels = load_codes(inputs)
        check_codes(self.codes, self.labels, self.cfg)
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
        if self.cache is not None:
            self.cache.check_train_config(cfg)

    def conditions(self, model: nn.Module, labels: torch.Tensor):
        return alignment_conditions(model, labels, self.cfg.num_classes, self.hp)

    def reference_logp(self, codes: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        self.reference.train()
        with torch.no_grad():
            return sequence_logp(self.reference, torch.cat([codes, codes]), c2)

    def _fresh(self) -> nn.Module:
        m = GPT(self.cfg)
        m.load_state_dict({k: v.detach().cpu().clone() for k, v in self.reference.state_dict().items()}, strict=True)
        return m

    def build_model(self) -> nn.Module:
        return self._fresh()

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.codes)

    def get_batch(self, indices: np.ndarray):
        return {"codes": torch.from_numpy(self.codes[indices]), "labels": torch.from_numpy(self.labels[indices]),
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


def make_llamagen_cca_task(params: dict, inputs: dict) -> LlamaGenCCATask:
    return LlamaGenCCATask(params, inputs)
