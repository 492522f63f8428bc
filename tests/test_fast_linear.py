"""nn/fast_linear.py: the oneDNN path computes F.linear (+ tanh-GELU) and is taken only where allowed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from guidance_repro.nn import fast_linear as fl

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(rows=37, fin=64, fout=96):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, rows, fin, generator=g), torch.randn(fout, fin, generator=g) / 8,
            torch.randn(fout, generator=g))


def test_the_pinned_torch_build_has_the_onednn_kernel():
    # without it every sampler silently keeps F.linear: correct, but the benchmarked speed is gone
    assert fl.AVAILABLE


@pytest.mark.parametrize("gelu", [False, True])
def test_onednn_path_computes_linear_and_gelu(gelu):
    x, w, b = _inputs()
    ref = F.linear(x, w, b)
    ref = F.gelu(ref, approximate="tanh") if gelu else ref
    with torch.no_grad(), fl.inference_linears():
        assert fl._onednn(x, w)
        out = fl.linear(x, w, b, gelu_tanh=gelu)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_f_linear_bit_for_bit_outside_the_context_with_grad_or_other_dtypes():
    x, w, b = _inputs()
    with torch.no_grad():
        assert torch.equal(fl.linear(x, w, b), F.linear(x, w, b))  # context closed
    with fl.inference_linears():
        assert not fl._onednn(x.requires_grad_(), w)  # autograd on: training keeps F.linear
        assert torch.equal(fl.linear(x, w, b, gelu_tanh=True), F.gelu(F.linear(x, w, b), approximate="tanh"))
        with torch.no_grad():
            assert not fl._onednn(x.double(), w.double())
            assert not fl._onednn(x.bfloat16(), w.bfloat16())
            assert fl._onednn(x, w) == fl.AVAILABLE
    assert not fl._ON.get()  # the switch is reset on exit
