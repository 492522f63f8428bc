"""Golden values: summary scalars of fixed computations on seeded tiny weights and data
(golden/inputs.py), the same on every CPU up to float rounding, so that the regression check
can hold them to a tolerance of a few rounding errors (kind ``golden``, docs/regression.md).

- ``train.<task>.loss.step<k>``: the loss the real training loop logs at steps 1..STEPS of each
  trainer on the tiny inputs (llamagen-pretrain, llamagen-cca, var-pretrain, var-cca,
  edm-fmnist, toy2d-density, star-train). A change in a loss, in a task's batch, in the optimiser
  or in the loop moves them; the CCA losses at steps >= 2 respond to the negative term (at step
  1 the reference equals the model, so every gap is 0 whatever the sign).
- ``sample.<sampler>.guided_norm`` / ``.guidance_norm``: at fixed labels/prompts and generator,
  the L2 norm of the guided logits a sampler returns, and of guided − conditional (the conditional
  logits recomputed by teacher forcing on the drawn tokens): LlamaGen CFG (sampling/ar.py), VAR's
  ramp CFG and STAR's CFG (sampling/next_scale.py). A guidance_norm of 0 means the scale was
  ignored or the null branch equals the conditional one.
- ``sample.edm_<method>.guided_norm`` / ``.guidance_norm``: the same for the EDM denoiser D_w at
  fixed (x, σ, labels), built by guidance.autoguidance.for_method (CFG: an unconditional guide;
  autoguidance: a smaller guide), guidance = D_w − D_1.

- ``metrics.precision_recall.*``: precision, recall and the k-NN radii of fixed synthetic
  feature sets (the evaluator's maths without an evaluator network).

Norms, not sums: a sum of logits nearly cancels, so its rounding error is not relative to it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import torch

from guidance_repro.guidance.cfg import Guidance
from guidance_repro.golden import inputs as gi
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train

STEPS = 4
TRAIN = {"steps": STEPS, "batch_size": 8, "lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.05,
         "grad_clip": 1.0, "log_every": 1, "checkpoint_every": 1000, "device": "cpu", "seed": 0}
CCA = {"beta": 0.05, "lam": 2.0, "dropout": "off"}
CFG_SCALE = 2.0
EDM_W = 2.0
PR_POINTS = 200


def first_losses(task, out: Path, extra: dict | None = None) -> dict:
    """{'loss': {'step<k>': loss}} logged by the real loop over TRAIN's first STEPS steps."""
    train(task, TrainConfig.from_dict({**TRAIN, **(extra or {})}, key="golden.train"), out, progress=False)
    rows = [json.loads(line) for line in (out.parent / (out.name + ".log.jsonl")).read_text().splitlines()]
    return {"loss": {f"step{r['step']}": float(r["loss"]) for r in rows}}


def _norms(guided: torch.Tensor, reference: torch.Tensor) -> dict:
    guided, reference = guided.double(), reference.double()
    return {"guided_norm": float(guided.norm()), "guidance_norm": float((guided - reference).norm())}


@torch.no_grad()
def llamagen_cfg(model) -> dict:
    from guidance_repro.sampling import ar
    model.eval()
    labels = torch.arange(model.cfg.num_classes)
    codes, guided = ar.sample_batch(model, labels, Guidance("cfg", CFG_SCALE), ar.SamplerConfig(),
                                    torch.Generator().manual_seed(0), return_logits=True)
    return _norms(guided, model(codes, labels))


@torch.no_grad()
def var_cfg(model, tokenizer) -> dict:
    from guidance_repro.sampling import next_scale
    model.eval()
    labels = torch.arange(model.cfg.num_classes)
    tokens, _, guided = next_scale.sample_batch(model, tokenizer, labels, Guidance("cfg", CFG_SCALE),
                                                next_scale.SamplerConfig(), torch.Generator().manual_seed(0),
                                                return_logits=True)
    return _norms(guided, model(labels, tokenizer.var_input(tokens)))


@torch.no_grad()
def star_cfg(model, tokenizer, text) -> dict:
    from guidance_repro.sampling import next_scale
    from guidance_repro.star.model import TextCond
    model.eval()
    cond = text.encode(list(gi.CAPTIONS[:3]))
    B = len(cond.pooled)
    empty = TextCond(*(t.expand(B, *t.shape[1:]) for t in text.empty()))
    tokens, _, guided = next_scale.sample_scales(model, tokenizer, TextCond.cat([cond, empty]), B,
                                                 Guidance("cfg", CFG_SCALE), next_scale.SamplerConfig(),
                                                 torch.Generator().manual_seed(0), return_logits=True)
    return _norms(guided, model(cond, tokenizer.var_input(tokens)))


@torch.no_grad()
def edm_guided(main, guide, method: str) -> dict:
    from guidance_repro.guidance.autoguidance import for_method
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 28, 28, generator=g)
    sigma = torch.tensor([0.2, 0.5, 1.0, 2.0])
    labels = torch.arange(4)
    # main is in eval mode (load_denoiser), the guides are built in eval mode by the caller
    d_w = for_method(method, main, guide, EDM_W)(x, sigma, labels)
    return _norms(d_w, main(x, sigma, labels))


def _llamagen(folder: Path, out: dict) -> None:
    from guidance_repro.llamagen.cca_task import LlamaGenCCATask
    from guidance_repro.llamagen.model import PretrainTask, load_gpt
    codes = gi.write_llamagen(folder)
    pretrained = folder / "gpt.pt"
    out["train"]["llamagen-pretrain"] = first_losses(PretrainTask({"model": gi.TINY_GPT}, {"codes": codes}),
                                                     pretrained)
    out["train"]["llamagen-cca"] = first_losses(
        LlamaGenCCATask(CCA, {"pretrained": pretrained, "codes": codes}), folder / "gpt_cca.pt")
    out["sample"]["llamagen_cfg"] = llamagen_cfg(load_gpt(pretrained))


def _tokenizer(folder: Path) -> Path:
    """The seeded msvq tokenizer VAR and STAR share, written once per scratch folder."""
    path = folder / "msvq.pt"
    return path if path.is_file() else gi.write_msvq(folder)


def _var(folder: Path, out: dict) -> None:
    from guidance_repro.var.msvq import load_msvq
    tokenizer_path = _tokenizer(folder)
    from guidance_repro.var.tasks import VARCCATask, VARPretrainTask, load_var
    inputs = {"codes": gi.write_var_tokens(folder), "tokenizer": tokenizer_path}
    pretrained = folder / "var.pt"
    out["train"]["var-pretrain"] = first_losses(VARPretrainTask({"model": gi.TINY_VAR}, inputs), pretrained)
    out["train"]["var-cca"] = first_losses(VARCCATask({k: v for k, v in CCA.items() if k != "dropout"},
                                                      {**inputs, "pretrained": pretrained}), folder / "var_cca.pt")
    out["sample"]["var_cfg"] = var_cfg(load_var(pretrained), load_msvq(tokenizer_path))


def _edm(folder: Path, out: dict) -> None:
    from guidance_repro.edm.task import EDMFashionMNISTTask, load_denoiser
    data = {"data": gi.write_fmnist(folder)}
    # The main model with an EMA (the file's weights are the average, as the slice's models), an
    # unconditional guide (CFG) and a smaller conditional one (autoguidance), each a few steps of
    # the real task: the untrained networks' last layers start at zero, so all guides would agree.
    models = {"edm-fmnist": ({"channels": [8, 8, 8], "emb": 16}, {"ema": "exp", "ema_decay": 0.5}),
              "edm-fmnist-uncond": ({"channels": [8, 8, 8], "emb": 16, "conditional": False}, {}),
              "edm-fmnist-small": ({"channels": [4, 4, 4], "emb": 8}, {})}
    for name, (params, train_extra) in models.items():
        out["train"][name] = first_losses(EDMFashionMNISTTask(params, data), folder / f"{name}.pt", train_extra)
    main, uncond, small = (load_denoiser(folder / f"{name}.pt") for name in models)
    out["sample"]["edm_cfg"] = edm_guided(main, lambda x, s, labels: uncond(x, s, None), "cfg")
    out["sample"]["edm_autoguidance"] = edm_guided(main, small, "autoguidance")


def _toy2d(folder: Path, out: dict) -> None:
    from guidance_repro.toy2d.tasks import ToyDensityTask
    out["train"]["toy2d-density"] = first_losses(ToyDensityTask({"width": 16, "layers": 2}, {}), folder / "toy.pt")


def _star(folder: Path, out: dict) -> None:
    from guidance_repro.star.tasks import STARTrainTask, load_star, tokenizer_at
    from guidance_repro.star.text import ToyTextEncoder
    tokenizer_path = _tokenizer(folder)
    encoder, tokens = gi.write_star(folder)
    model_path = folder / "star.pt"
    task = STARTrainTask({"model": gi.TINY_STAR}, {"codes": tokens, "tokenizer": tokenizer_path,
                                                   "text_encoder": encoder})
    out["train"]["star-train"] = first_losses(task, model_path)
    out["sample"]["star_cfg"] = star_cfg(load_star(model_path), tokenizer_at(tokenizer_path, 28, gi.PATCH_NUMS),
                                         ToyTextEncoder(encoder))


def precision_recall_fixed() -> dict:
    """Precision/recall (metrics/precision_recall.py, k = ADM_K) of two seeded Gaussian feature sets
    that overlap partly, and the norm of the real set's k-NN radii: the radii's k sets every count
    (with k = 1 the balls shrink and both shares fall), and a count moves by a whole 1/N."""
    import numpy as np

    from guidance_repro.metrics.precision_recall import knn_radii, precision_recall
    rng = np.random.default_rng(7)
    real = rng.normal(0.0, 1.0, (PR_POINTS, 8)).astype(np.float32)
    fake = rng.normal(0.4, 1.3, (PR_POINTS, 8)).astype(np.float32)
    precision, recall = precision_recall(real, fake)
    return {"precision": precision, "recall": recall,
            "real_radii_norm": float(knn_radii(torch.from_numpy(real)).double().norm())}


def _metrics(folder: Path, out: dict) -> None:
    out["metrics"] = {"precision_recall": precision_recall_fixed()}


FAMILIES: dict[str, Callable] = {"llamagen": _llamagen, "var": _var, "edm": _edm, "toy2d": _toy2d, "star": _star,
                                 "metrics": _metrics}


def compute(threads: int | None = None, families=tuple(FAMILIES)) -> dict:
    """Every golden value, nested ({'train': {task: {'loss': {...}}}, 'sample': {...}}), computed
    in a scratch folder; ``threads``: torch's intra-op thread count for the computation;
    ``families``: only these (tests)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        out: dict = {"train": {}, "sample": {}, "metrics": {}}
        with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
            for name in families:
                FAMILIES[name](Path(tmp), out)
        return out
    finally:
        torch.set_num_threads(before)
