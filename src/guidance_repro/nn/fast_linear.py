"""Linear layers through oneDNN while a sampler runs on the CPU: same maths, a faster kernel.

``F.linear`` on a float32 CPU tensor goes to MKL's sgemm. oneDNN's inner-product primitive
(``torch.ops.mkldnn._linear_pointwise``, the op torch.compile's CPU backend emits) computes the
same x·Wᵀ + b, and at one thread it was 10-20 % faster at the VAR-d16 sampling shapes (8 to 2048
rows, 1024 -> 4096 and back); it also applies the tanh-GELU to its output before writing it, so
the FFN's hidden map (33 MB at the last scale) is not written, read and written again. The
results differ from sgemm's by float rounding only (different blocking of the same sums).

It is used only inside :func:`inference_linears` (the next-scale sampler opens it for one pass),
only without autograd and only for float32 CPU tensors: teacher forcing, training and GPU runs
keep ``F.linear`` bit for bit.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

_ON: ContextVar[bool] = ContextVar("guidance_repro_inference_linears", default=False)


def _available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


AVAILABLE = _available()


@contextmanager
def inference_linears(on: bool = True):
    """Within the block, :func:`linear` may take the oneDNN kernel (see the module docstring)."""
    token = _ON.set(on and AVAILABLE)
    try:
        yield
    finally:
        _ON.reset(token)


def _onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_ON.get() and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           gelu_tanh: bool = False) -> torch.Tensor:
    """x·Wᵀ + b, then GELU (tanh approximation) if ``gelu_tanh``."""
    if _onednn(x, weight):
        if gelu_tanh:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "tanh")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    return F.gelu(y, approximate="tanh") if gelu_tanh else y
