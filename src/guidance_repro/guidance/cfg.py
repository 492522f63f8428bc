"""Classifier-free guidance: how each model family combines conditional and unconditional outputs.

LlamaGen (next-token AR, cca.md §3): logits = u + s * (c - u), with s constant over tokens; s = 1
is no guidance. VAR-style callers pass their own scale (LlamaGen's s corresponds to VAR's 1 + t).
The AR sampler runs the conditional and unconditional halves as one doubled batch [cond; uncond].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from guidance_repro.errors import ReproError

METHODS = ("none", "cfg", "autoguidance")


@dataclass(frozen=True)
class Guidance:
    """Which guidance a sampler applies: ``none`` (a CCA model is sampled this way), ``cfg``, or
    ``autoguidance`` (scale = w; the sampler is handed the guide model, ``guidance.autoguidance``)."""
    method: str = "none"
    scale: float = 1.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ReproError(f"guidance.method: must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not isinstance(self.scale, (int, float)) or self.scale != self.scale:
            raise ReproError(f"guidance.scale: must be a number, got {self.scale!r}")

    @classmethod
    def from_dict(cls, d: dict | None, key: str = "guidance") -> "Guidance":
        d = dict(d or {})
        unknown = sorted(set(d) - {"method", "scale"})
        if unknown:
            raise ReproError(f"{key}.{unknown[0]}: unknown key (method, scale)")
        return cls(method=str(d.get("method", "none")), scale=float(d.get("scale", 1.0)))

    @property
    def doubled(self) -> bool:
        """True when the sampler must run the [cond; uncond] doubled batch."""
        return self.method == "cfg"


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """LlamaGen's CFG on logits: uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def split_and_combine(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Logits of a doubled batch [cond; uncond] (2B, ...) -> guided logits (B, ...)."""
    if logits.shape[0] % 2:
        raise ReproError(f"CFG: a doubled batch must have an even size, got {logits.shape[0]}")
    cond, uncond = logits.chunk(2, dim=0)
    return cfg_combine(cond, uncond, scale)
