"""Mechanism metrics of the LlamaGen slice: numbers that respond to the method itself, not to the
seed, so that the regression check can test them with rules (report/regression_rules.py) instead of
seed bands (docs/regression.md, Mechanism metrics).

- ``cfg_kl``: per CFG scale s, the mean KL(guided ‖ conditional) of the next-token distributions
  along sequences drawn by the real sampler (``sampling.ar.sample_batch``, fixed labels and seed).
  guided = c + (s − 1)(c − u), so the KL is 0 at s = 1 and, on a fixed prefix, its derivative in
  t = s − 1 is t·Var(c − u) ≥ 0: it grows with s. A sampler that ignores s (or never feeds the null
  class, so that u = c) gives 0 at every scale.
- ``cca_margin_rise``: on a fixed held-out batch, the change of the mean contrastive margin
  log p(x | c) − log p(x | c⁻), c⁻ = (c + 1) mod K (a negative built here, not by the training
  code, so that a broken ``make_negatives`` cannot hide itself), over a short probe fine-tune of the
  pretrained model by the real CCA task and training loop (``PROBE`` steps; the slice's own
  fine-tunes are too short at smoke size for the margin to move beyond noise). CCA raises it (the
  loss pushes log p(x|c⁻) down); with the negative term's sign flipped it falls. The probe runs at
  (β, λ), (β, 3λ) and (2β, λ): the three rises differ unless λ or β is ignored, in which case two
  of the probes are the same computation and their rises are bit-identical.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from guidance_repro.guidance.cfg import Guidance
from guidance_repro.llamagen.cca_task import LlamaGenCCATask
from guidance_repro.llamagen.model import GPT, load_gpt, sequence_logp
from guidance_repro.sampling import ar
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train

# The probe fine-tune: long and fast enough for the margin to move far beyond float noise on a tiny
# model (measured: rise ~0.5 nats at 6 steps, lr 2e-3, vs ~1e-3 at the smoke slice's 3 steps, 1e-4).
PROBE = {"steps": 6, "batch_size": 16, "lr": 2.0e-3, "grad_clip": 1.0, "seed": 0}

CFG_SCALES = (1.0, 1.5, 2.0, 3.0)


def scale_key(s: float) -> str:
    return f"s{s:g}"


@torch.no_grad()
def cfg_kl(model: GPT, labels: torch.Tensor, scales=CFG_SCALES, seed: int = 0) -> dict[str, float]:
    """{s<scale>: mean KL(guided ‖ conditional)} over every position of sequences sampled at s."""
    model.eval()
    out = {}
    for s in scales:
        g = torch.Generator().manual_seed(seed)
        codes, guided = ar.sample_batch(model, labels, Guidance("cfg", float(s)), ar.SamplerConfig(),
                                        g, return_logits=True)
        cond = model(codes, labels)  # teacher forcing on the sampled prefixes: the conditional half
        logp_g, logp_c = torch.log_softmax(guided.double(), -1), torch.log_softmax(cond.double(), -1)
        kl = (logp_g.exp() * (logp_g - logp_c)).sum(-1)
        out[scale_key(s)] = float(kl.mean())
    return out


@torch.no_grad()
def contrastive_margin(model: GPT, codes: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the batch of log p(x | c) − log p(x | (c + 1) mod K), summed over tokens."""
    model.eval()
    negative = (labels + 1) % model.cfg.num_classes
    return float((sequence_logp(model, codes, labels) - sequence_logp(model, codes, negative)).mean())


def probe_points(beta: float, lam: float) -> dict[str, tuple[float, float]]:
    return {"base": (beta, lam), "lam_x3": (beta, 3 * lam), "beta_x2": (2 * beta, lam)}


def probe_finetune(pretrained: Path, codes: Path, beta: float, lam: float, beta_mode: str) -> GPT:
    """The pretrained GPT after PROBE steps of the real llamagen-cca task (dropout off)."""
    task = LlamaGenCCATask({"beta": beta, "lam": lam, "beta_mode": beta_mode, "dropout": "off"},
                           {"pretrained": pretrained, "codes": codes})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.pt"
        train(task, TrainConfig.from_dict(PROBE, key="probe"), out, progress=False)
        return load_gpt(out)


def mechanism_metrics(pretrained: Path, train_codes: Path, codes: np.ndarray, labels: np.ndarray,
                      beta: float, lam: float, beta_mode: str, seed: int = 0) -> dict:
    """The mechanism metrics JSON of one model size (module docstring)."""
    x, c = torch.as_tensor(codes, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)
    base = load_gpt(pretrained)
    before = contrastive_margin(base, x, c)
    rises = {name: contrastive_margin(probe_finetune(pretrained, train_codes, b, l, beta_mode), x, c) - before
             for name, (b, l) in probe_points(beta, lam).items()}
    return {"cfg_kl": cfg_kl(base, c, seed=seed), "cca_margin_pretrained": before,
            "cca_margin_rise": rises,
            "protocol": {"held_out": int(len(x)), "negative": "(c + 1) mod K", "seed": seed,
                         "cfg_scales": list(CFG_SCALES), "probe": {**PROBE, "beta": beta, "lam": lam,
                                                                   "beta_mode": beta_mode}}}
