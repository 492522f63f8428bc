"""CCA loss (code form, cca.md §1.1), DPO and Unlearning baselines (§1.4), against direct
per-sample computations in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.guidance import cca

pytestmark = pytest.mark.usefixtures("one_thread")


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def paper_code_form(gp, gn, masked, beta, lam):
    """The table in cca.md §1.1, one sample at a time."""
    n = len(gp)
    pos = sum(-logsig(beta * gp[i]) for i in range(n)) / n
    neg = 0.0
    for i in range(n):
        if masked[i]:
            neg += -1.0 * logsig(+1 * beta * gn[i])
        else:
            neg += -lam * logsig(-1 * beta * gn[i])
    return (pos + neg / n) / max(lam, 1.0)


@pytest.mark.parametrize("beta,lam", [(0.02, 1000.0), (0.5, 10.0), (1.0, 1.0), (0.1, 0.5), (2.0, 0.0)])
def test_cca_loss_matches_formula(beta, lam):
    rng = np.random.default_rng(0)
    gp, gn = rng.normal(0, 30, 16), rng.normal(0, 30, 16)
    masked = rng.random(16) < 0.3
    got = cca.cca_loss(torch.tensor(gp), torch.tensor(gn), torch.tensor(masked), beta, lam)
    assert got.item() == pytest.approx(paper_code_form(gp, gn, masked, beta, lam), rel=1e-6, abs=1e-9)


def test_cca_loss_without_masks_is_paper_form_over_lambda():
    rng = np.random.default_rng(1)
    gp, gn, beta, lam = rng.normal(0, 5, 8), rng.normal(0, 5, 8), 0.3, 20.0
    paper = -np.mean([logsig(beta * g) for g in gp]) - lam * np.mean([logsig(-beta * g) for g in gn])
    got = cca.cca_loss(torch.tensor(gp), torch.tensor(gn), torch.zeros(8, dtype=torch.bool), beta, lam)
    assert got.item() == pytest.approx(paper / lam, rel=1e-6)


def test_cca_gradients_push_positives_up_and_true_negatives_down():
    gp = torch.zeros(4, requires_grad=True)
    gn = torch.zeros(4, requires_grad=True)
    masked = torch.tensor([True, False, False, True])
    cca.cca_loss(gp, gn, masked, 0.5, 10.0).backward()
    assert (gp.grad < 0).all()                     # descent raises log p(x|c)
    assert (gn.grad[~masked] > 0).all()            # ... lowers it for true negatives
    assert (gn.grad[masked] < 0).all()             # masked / same-label count as positives
    # true negatives weigh lambda times a masked one, before the division by max(lambda, 1)
    assert gn.grad[1].item() == pytest.approx(-10.0 * gn.grad[0].item())


def test_make_negatives_roll_uncond_and_same_label():
    labels = torch.tensor([3, 5, 5, 7, 1, 3])
    g = torch.Generator().manual_seed(0)
    pos, neg, masked = cca.make_negatives(labels, null_class=10, uncond_ratio=0.0, generator=g)
    assert pos.tolist() == labels.tolist()
    assert neg.tolist() == [5, 5, 7, 1, 3, 3]      # rolled by -1: neg[i] = labels[i+1]
    assert masked.tolist() == [False, True, False, False, False, True]  # same-label -> positive
    g = torch.Generator().manual_seed(0)
    pos, neg, masked = cca.make_negatives(labels, null_class=10, uncond_ratio=1.0, generator=g)
    assert pos.tolist() == [10] * 6 and neg.tolist() == [10] * 6 and masked.all()
    # a fraction of the batch is masked, both c and c- together
    big = torch.arange(4000) % 10
    pos, neg, masked = cca.make_negatives(big, 10, 0.1, torch.Generator().manual_seed(1))
    unc = pos == 10
    assert torch.equal(unc, neg == 10) and 0.08 < unc.float().mean().item() < 0.12
    assert masked[unc].all()


def test_dpo_and_unlearning_formulas():
    rng = np.random.default_rng(2)
    gp, gn = rng.normal(0, 3, 10), rng.normal(0, 3, 10)
    masked = rng.random(10) < 0.4
    beta, lam = 0.7, 5.0
    dpo = -np.mean([logsig(beta * (a - b)) for a, b in zip(gp, gn)])
    assert cca.dpo_loss(torch.tensor(gp), torch.tensor(gn), beta).item() == pytest.approx(dpo, rel=1e-6)
    neg = np.mean([(1.0 * g) if m else (lam * -1.0 * g) for g, m in zip(gn, masked)])
    unl = (-np.mean(gp) - neg) / lam
    got = cca.unlearning_loss(torch.tensor(gp), torch.tensor(gn), torch.tensor(masked), lam)
    assert got.item() == pytest.approx(unl, rel=1e-6)
    for method in cca.METHODS:
        cca.alignment_loss(method, torch.tensor(gp), torch.tensor(gn), torch.tensor(masked), beta, lam)
    with pytest.raises(ReproError, match="params.method"):
        cca.alignment_loss("Unlearning", torch.tensor(gp), torch.tensor(gn), torch.tensor(masked), beta, lam)


def test_effective_beta_modes():
    assert cca.effective_beta(0.02, "sequence", 49) == 0.02
    assert cca.effective_beta(49.0, "per_token", 49) == pytest.approx(1.0)
    # the paper's beta at 576 tokens is 11.52 per token
    assert cca.effective_beta(0.02 * 576, "per_token", 576) == pytest.approx(0.02)
    with pytest.raises(ReproError, match="beta_mode"):
        cca.effective_beta(1.0, "mean", 49)
