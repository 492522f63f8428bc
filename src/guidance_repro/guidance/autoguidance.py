"""Autoguidance (Karras et al., NeurIPS 2024, "Guiding a diffusion model with a bad version of
itself"; reference/autoguidance.md §1): the one place the guidance formula lives.

    D_w(x; σ, c) = D0(x; σ, c) + w · (D1(x; σ, c) − D0(x; σ, c))

D1 is the main model, D0 the guide. w = 1 is the main model alone (the guide is not evaluated).
Every method of the autoguidance experiments is this combination with a different guide:

- autoguidance: the guide is a smaller, shorter-trained *conditional* model, called with the same
  class label as the main model (the edm2 release passes ``labels`` to the guide; pre-Dec-2024 code
  did not, §1 "Guide labels");
- CFG: the guide is the unconditional model (it receives the label and ignores it);
- naive score scaling ("truncation", Fig. 1): the guide is the identity D0(x) = x, because
  x + w·(D1 − x) = x + σ²·w·∇log p1, i.e. the score multiplied by w.

The same ``combine`` guides next-token AR models (beyond the paper; the cross-method matrix):
logits = guide + w·(main − guide), where the guide is a smaller, shorter-trained GPT called with
the same class label and prefix (``sampling/ar.py``). It has the form of LlamaGen's CFG
u + s·(c − u), with the guide in place of the unconditional branch.
"""

from __future__ import annotations

from typing import Callable

import torch

from guidance_repro.errors import ReproError

METHODS = ("none", "cfg", "autoguidance", "score-scaling")

Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def combine(d_guide: torch.Tensor, d_main: torch.Tensor, w: float) -> torch.Tensor:
    """D0 + w·(D1 − D0) in float32 or wider (edm2 lerps both outputs cast to float32).

    Denoiser outputs (diffusion) or next-token logits (AR): one formula for both."""
    dtype = torch.promote_types(torch.promote_types(d_main.dtype, d_guide.dtype), torch.float32)
    return torch.lerp(d_guide.to(dtype), d_main.to(dtype), float(w))


def identity_denoiser(x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The guide of naive score scaling: D0(x) = x (zero score)."""
    return x


def guided(main: Denoiser, guide: Denoiser | None, w: float) -> Denoiser:
    """The guided denoiser D_w. The guide gets exactly the main model's (x, σ, labels)."""
    w = float(w)
    if w == 1.0:
        return main
    if guide is None:
        raise ReproError(f"guidance weight {w} != 1 needs a guide model")

    def d_w(x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return combine(guide(x, sigma, labels), main(x, sigma, labels), w)

    return d_w


def for_method(method: str, main: Denoiser, guide: Denoiser | None, w: float) -> Denoiser:
    """The denoiser of ``method`` (see the module docstring) at weight ``w``."""
    if method not in METHODS:
        raise ReproError(f"guidance method: must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "none":
        return main
    if method == "score-scaling":
        return guided(main, identity_denoiser, w)
    if guide is None and w != 1.0:
        raise ReproError(f"guidance method {method}: a guide model is required (w = {w})")
    return guided(main, guide, w)
