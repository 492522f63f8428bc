"""Condition Contrastive Alignment (Chen et al., ICLR 2025): the loss, its baselines and the
alignment step of a micro-batch. They are shared by every model family (LlamaGen, VAR, STAR): they
only see per-sequence log-likelihoods; each family's fine-tuning task (llamagen/cca_task.py,
var/tasks.py, star/tasks.py) supplies those.

Code form of the loss (cca.md §1.1, the official default path with uncond_ratio > 0):

    gap±_i = log p_θ(x_i | c±_i) − log p_φ(x_i | c±_i)      (c⁺ true label, c⁻ rolled label)
    m_i    = sample i was masked to the null class, or c⁻_i = c_i
    (w_i, s_i) = (1, +1) if m_i else (λ, −1)
    loss   = [−mean logσ(β·gap⁺) − mean w·logσ(s·β·gap⁻)] / max(λ, 1)

So masked and same-label "negatives" are pushed up like positives, true negatives get weight λ, and
the division by max(λ, 1) makes true negatives weigh ≈ 1 and positives ≈ 1/λ.

β across sequence lengths (``beta_mode``): the paper's β = 0.02 multiplies a log-ratio summed over
576 (LlamaGen-384) or 680 (VAR) tokens; at 49 tokens the same β collapses training
(toy-scale-notes.md). ``beta_mode="sequence"`` (default, the paper) uses β as given;
``beta_mode="per_token"`` uses β_eff = β / num_tokens, i.e. β multiplies the *mean* per-token
log-ratio, whose scale does not grow with the sequence length (the paper's setting is
β_per_token = 0.02 · 576 = 11.5 for LlamaGen-384). The β actually applied is reported as beta_eff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError

METHODS = ("cca", "dpo", "unlearning")
BETA_MODES = ("sequence", "per_token")


def effective_beta(beta: float, mode: str, num_tokens: int) -> float:
    if mode not in BETA_MODES:
        raise ReproError(f"params.beta_mode: must be one of {', '.join(BETA_MODES)}, got {mode!r}")
    return beta / num_tokens if mode == "per_token" else beta


def negative_weights(masked: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, s) per sample: (1, +1) where ``masked`` (treated as positive), else (λ, −1)."""
    masked = masked.bool()
    w = torch.where(masked, torch.ones_like(masked, dtype=torch.float32), torch.full_like(masked, lam, dtype=torch.float32))
    s = torch.where(masked, 1.0, -1.0).to(torch.float32)
    return w, s


def cca_loss(gap_pos: torch.Tensor, gap_neg: torch.Tensor, masked: torch.Tensor,
             beta: float, lam: float) -> torch.Tensor:
    """The official code form (module docstring); gaps are policy minus reference log-likelihoods."""
    w, s = negative_weights(masked, lam)
    w, s = w.to(gap_neg.device), s.to(gap_neg.device)
    pos = -F.logsigmoid(beta * gap_pos).mean()
    neg = -(w * F.logsigmoid(s * beta * gap_neg)).mean()
    return (pos + neg) / max(lam, 1.0)


def dpo_loss(gap_pos: torch.Tensor, gap_neg: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO baseline (cca.md §1.4): −logσ(β·(gap⁺ − gap⁻)), averaged."""
    return -F.logsigmoid(beta * (gap_pos - gap_neg)).mean()


def unlearning_loss(gap_pos: torch.Tensor, gap_neg: torch.Tensor, masked: torch.Tensor,
                    lam: float) -> torch.Tensor:
    """Unlearning baseline (cca.md §1.4): [−mean gap⁺ − mean w·s·gap⁻] / max(λ, 1), no sigmoid."""
    w, s = negative_weights(masked, lam)
    w, s = w.to(gap_neg.device), s.to(gap_neg.device)
    return (-gap_pos.mean() - (w * s * gap_neg).mean()) / max(lam, 1.0)


def alignment_loss(method: str, gap_pos, gap_neg, masked, beta: float, lam: float) -> torch.Tensor:
    if method == "cca":
        return cca_loss(gap_pos, gap_neg, masked, beta, lam)
    if method == "dpo":
        return dpo_loss(gap_pos, gap_neg, beta)
    if method == "unlearning":  # lower case on purpose: the official argparse/code mismatch (§1.4)
        return unlearning_loss(gap_pos, gap_neg, masked, lam)
    raise ReproError(f"params.method: must be one of {', '.join(METHODS)}, got {method!r}")


def make_negatives(labels: torch.Tensor, null_class: int, uncond_ratio: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c⁺, c⁻, m): c⁻ = labels rolled by −1 within the micro-batch; with probability uncond_ratio
    a sample has both c⁺ and c⁻ set to the null class; m marks masked or same-label samples."""
    neg = torch.roll(labels, shifts=-1, dims=0)
    dev = labels.device if generator is None else "cpu"
    uncond = (torch.rand(labels.shape, generator=generator, device=dev) < uncond_ratio).to(labels.device)
    null = torch.full_like(labels, null_class)
    pos, neg = torch.where(uncond, null, labels), torch.where(uncond, null, neg)
    return pos, neg, uncond | (neg == pos)


@dataclass(frozen=True)
class AlignmentParams:
    """The fine-tuning parameters every family's CCA task shares (validated, one place)."""

    beta: float
    beta_mode: str
    lam: float
    uncond_ratio: float
    method: str
    class_dropout: float

    @classmethod
    def pop(cls, p: dict, lam: float, class_dropout: float) -> "AlignmentParams":
        """Take the shared keys out of the task's params ``p`` (defaults: β 0.02 per sequence,
        uncond_ratio 0.1, method cca; ``lam`` and ``class_dropout`` are the family's defaults)."""
        out = cls(beta=float(p.pop("beta", 0.02)), beta_mode=str(p.pop("beta_mode", "sequence")),
                  lam=float(p.pop("lam", lam)), uncond_ratio=float(p.pop("uncond_ratio", 0.1)),
                  method=str(p.pop("method", "cca")),
                  class_dropout=float(p.pop("class_dropout", class_dropout)))
        if out.method not in METHODS:
            raise ReproError(f"params.method: must be one of {', '.join(METHODS)}, got {out.method!r}")
        if not out.beta > 0 or out.lam < 0 or not 0 <= out.uncond_ratio <= 1:
            raise ReproError("params.beta/lam/uncond_ratio: need beta > 0, lam >= 0, 0 <= uncond_ratio <= 1")
        effective_beta(out.beta, out.beta_mode, 1)  # validates beta_mode
        return out


def alignment_conditions(model: nn.Module, labels: torch.Tensor, null_class: int,
                         hp: AlignmentParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(c2 = [c⁺; c⁻] after the model's own label dropout, m) of a micro-batch's labels."""
    pos, neg, masked = make_negatives(labels, null_class, hp.uncond_ratio)
    raw = model.module if hasattr(model, "module") else model  # DDP wrapper
    return raw.drop_labels(torch.cat([pos, neg])), masked


def alignment_step(model: nn.Module, reference: nn.Module, labels: torch.Tensor, null_class: int,
                   hp: AlignmentParams, beta_eff: float,
                   logp: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                   reference_logp: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
    """One CCA / DPO / unlearning loss on a micro-batch, for any family.

    ``logp(m, c2)`` returns the per-sequence log-likelihoods of the batch's token sequences, each
    sequence twice ([x; x]), under the conditions c2 = [c⁺; c⁻] (already passed through the model's
    own label dropout here). The reference runs in train() mode without gradients, unless
    ``reference_logp(c2)`` gives its log-likelihoods (recorded once: llamagen.cca_reference).
    """
    c2, masked = alignment_conditions(model, labels, null_class, hp)
    policy = logp(model, c2)
    if reference_logp is not None:
        ref = reference_logp(c2)
    else:
        reference.train()
        with torch.no_grad():
            ref = logp(reference, c2)
    gap = policy - ref
    B = len(labels)
    loss = alignment_loss(hp.method, gap[:B], gap[B:], masked, beta_eff, hp.lam)
    return loss, {"gap_pos": gap[:B].mean().item(), "gap_neg": gap[B:].mean().item(),
                  "masked": masked.float().mean().item(), "beta_eff": beta_eff}
