"""Mechanism metrics of STAR's normalized 2-D RoPE, read from the angles a trained model runs with
(``STAR.rope_angles``, built by nn/rope2d.py), tested by rules in the regression check
(report/regression_rules.py, docs/regression.md). They depend on the schedule only, not on the
weights or the seed:

- ``rope.corner_spread``: the largest difference between the angles of the bottom-right token of
  any scale (pn > 1) and of the last scale. Normalized positions map every grid onto [0, N], so
  the corners coincide (0); unnormalized positions (x = column index) make them differ.
- ``rope.x_step.x_half`` / ``rope.x_step.y_half``: on the last scale, the angle change from token
  (x=0, y=0) to its right neighbour (x=1, y=0) in the first half of the channels (the column
  rotation) and in the second half (the row rotation): > 0 and 0. Rows and columns swapped give
  0 and > 0.
"""

from __future__ import annotations

import torch


def rope_metrics(angles: torch.Tensor, patch_nums) -> dict:
    half = angles.shape[1] // 2
    ends = torch.cumsum(torch.tensor([p * p for p in patch_nums]), 0) - 1
    last = angles[int(ends[-1])]
    spread = max((float((angles[int(e)] - last).abs().max()) for e, p in zip(ends, patch_nums) if p > 1),
                 default=0.0)
    start = int(ends[-1]) - patch_nums[-1] ** 2 + 1  # token (0, 0) of the last scale
    step = angles[start + 1] - angles[start]
    return {"rope": {"corner_spread": spread, "x_step": {"x_half": float(step[:half].abs().max()),
                                                           "y_half": float(step[half:].abs().max())}},
            "protocol": {"patch_nums": [int(p) for p in patch_nums]}}
