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

The teacher-forced losses (:func:`teacher_forced_losses`) measure what the text condition and the
position code do to the model's predictions on fixed token rows.
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


def _cross_entropy(model, cond, x_in: torch.Tensor, codes: torch.Tensor) -> float:
    logits = model(cond, x_in)
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(),
                                                   codes.reshape(-1)))


@torch.no_grad()
def teacher_forced_losses(rope_model, absolute_model, tokenizer, text, codes: torch.Tensor,
                          captions: list[str]) -> dict:
    """Teacher-forced cross-entropy (nats per token) of fixed token rows and their captions:

    - ``text.loss.{true,shuffled,null}``: the RoPE model with the true captions, the captions
      rolled by one row (every image gets another one's prompt) and the empty prompt. If the text
      condition does not reach the logits (cross-attention or the start token cut off, the prompt
      replaced), the three are the same computation and bit-equal.
    - ``positions.loss.{rope,absolute,rope_off}``: the RoPE model, the learned-absolute ablation
      (trained alike), and the RoPE model with its angles zeroed. ``positions`` ignored by the
      model builder makes rope = absolute bit-equal; RoPE not applied in attention, rope = rope_off.
    """
    from guidance_repro.star.model import TextCond
    from guidance_repro.star.tasks import unwrap
    rope_model.eval(), absolute_model.eval()
    x_in = tokenizer.var_input(codes)
    cond = text.encode(captions)
    rolled = cond.take(torch.roll(torch.arange(len(captions)), 1))
    empty = TextCond(*(t.expand(len(captions), *t.shape[1:]) for t in text.empty()))
    out = {"text": {"loss": {name: _cross_entropy(rope_model, c, x_in, codes)
                             for name, c in (("true", cond), ("shuffled", rolled), ("null", empty))}}}
    angles = unwrap(rope_model).rope_angles
    true_loss = out["text"]["loss"]["true"]
    try:
        unwrap(rope_model).rope_angles = torch.zeros_like(angles)
        rope_off = _cross_entropy(rope_model, cond, x_in, codes)
    finally:
        unwrap(rope_model).rope_angles = angles
    out["positions"] = {"loss": {"rope": true_loss, "absolute": _cross_entropy(absolute_model, cond, x_in, codes),
                                 "rope_off": rope_off}}
    return out
