"""Mechanism metric of the VAR slice's CFG ramp, tested by rules in the regression check
(report/regression_rules.py, docs/regression.md).

``cfg_kl.c<cfg>``: the mean KL(guided ‖ conditional) over every token of images drawn by the real
next-scale sampler (``sampling.next_scale.sample_batch``, fixed labels and seed), the conditional
logits recomputed by teacher forcing on the drawn tokens. With VAR's ramp, guided = c + t(c − u),
t = cfg · si / (S − 1): 0 at cfg = 0, growing with cfg (on a fixed prefix d KL / dt = t·Var(c − u)),
and 0 at every cfg when the scale is ignored or the null class never fed (u = c).
``cfg_kl_first_scale.c<cfg>``: the same on the first scale only, where the ramp is t = 0: a ramp
replaced by a constant strength makes it positive.
"""

from __future__ import annotations

import torch

from guidance_repro.guidance.cfg import Guidance
from guidance_repro.sampling import next_scale

CFGS = (0.0, 0.5, 1.0, 2.0)


@torch.no_grad()
def cfg_kl(model, tokenizer, labels: torch.Tensor, cfgs=CFGS, seed: int = 0) -> dict:
    model.eval()
    first = model.cfg.patch_nums[0] ** 2
    kl_all, kl_first = {}, {}
    for c in cfgs:
        g = torch.Generator().manual_seed(seed)
        tokens, _, guided = next_scale.sample_batch(model, tokenizer, labels, Guidance("cfg", float(c)),
                                                    next_scale.SamplerConfig(), g, return_logits=True)
        cond = model(labels, tokenizer.var_input(tokens))
        logp_g, logp_c = torch.log_softmax(guided.double(), -1), torch.log_softmax(cond.double(), -1)
        kl = (logp_g.exp() * (logp_g - logp_c)).sum(-1)
        kl_all[f"c{c:g}"], kl_first[f"c{c:g}"] = float(kl.mean()), float(kl[:, :first].mean())
    return {"cfg_kl": kl_all, "cfg_kl_first_scale": kl_first,
            "protocol": {"cfgs": list(cfgs), "seed": seed, "images": int(len(labels))}}
