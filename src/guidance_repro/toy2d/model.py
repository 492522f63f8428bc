"""The toy's models: an MLP that outputs a scalar log-density G(x; σ); score = ∇_x G by autograd,
denoiser D(x; σ) = x + σ²∇_x G (autoguidance.md §4).

Input features: [x·c_in, ¼·log σ, 1] with c_in = 1/√(σ² + σ_data²) (the EDM input scaling, so
the network sees unit-variance positions at every noise level). Four hidden layers of
magnitude-preserving linears with MP-SiLU; the output layer has a learned gain initialised at 0.

Our choice (not stated in the fact sheet): the network's output is added to the log-density of the
best isotropic Gaussian, −‖x‖²/(2(σ² + σ_data²)), so the model starts at that Gaussian (gain 0)
and the network learns the difference.
"""

from __future__ import annotations

import torch
from torch import nn

from guidance_repro.nn.mp import MPLinear, mp_silu

SIGMA_DATA = 0.5


class ToyLogDensity(nn.Module):
    def __init__(self, width: int = 64, layers: int = 4, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.width, self.layers, self.sigma_data = width, layers, sigma_data
        dims = [4] + [width] * layers
        self.hidden = nn.ModuleList(MPLinear(i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.out = MPLinear(width, 1)
        self.gain = nn.Parameter(torch.zeros([]))

    def log_density(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """G(x; σ) for x (n, 2) and σ scalar or (n,): returns (n,)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(len(x), 1)
        var = sigma ** 2 + self.sigma_data ** 2
        h = torch.cat([x / var.sqrt(), sigma.log() / 4, torch.ones_like(sigma)], dim=1)
        for layer in self.hidden:
            h = mp_silu(layer(h))
        g = self.out(h, gain=self.gain)[:, 0]
        return g - 0.5 * (x ** 2).sum(1) / var[:, 0]

    def score(self, x: torch.Tensor, sigma: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        with torch.enable_grad():
            xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
            g = self.log_density(xg, sigma).sum()
            (grad,) = torch.autograd.grad(g, xg, create_graph=create_graph)
        return grad

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None,
                log_density: bool = False) -> torch.Tensor:
        """Denoiser D(x; σ) = x + σ²∇G (labels are ignored: each toy model is fit to one set), or
        G itself with ``log_density=True`` (the training loss calls it so, through DDP's forward)."""
        if log_density:
            return self.log_density(x, sigma)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1)
        return x + s ** 2 * self.score(x, sigma)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def log_normal_sigma(n: int, p_mean: float, p_std: float, device=None) -> torch.Tensor:
    """σ = exp(P_mean + P_std·n), n ~ N(0, 1) (EDM training noise distribution)."""
    return (torch.randn(n, device=device) * p_std + p_mean).exp()

