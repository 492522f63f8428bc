"""Training tasks of the toy STAR: the frozen text encoder, the STAR model, CCA for text.

- ``star-text-encoder``: a small open_clip CLIP (metrics/toy_clip.py's ClipTask and ClipLoss) on
  the compositions' ``train`` split (default), of which STAR uses the text tower. The judge CLIP's
  ``clip`` split is refused: the text encoder is never the judge's model or data.
- ``star-train``: cross-entropy over all L tokens with 10 % empty-prompt dropout (star.md §2).
  With ``inputs.init`` (a STAR model file on another scale schedule) it is the resolution step:
  the model is carried to the tokens' schedule by ``star.model.change_schedule`` and fine-tuned.
- ``star-cca``: CCA (guidance/cca.py, the one implementation) with captions rolled by −1 within
  the micro-batch as negatives, the empty prompt as the masked ("null") condition.

Tokens files (``star-encode``): ``codes`` (N, L), ``captions`` (N,), ``image_size``,
``patch_nums``; the tokenizer file is carried to that size/schedule by :func:`tokenizer_at`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.star.model import STAR, STARConfig, TextCond, change_schedule, drop_text, sequence_logp

STAR_TASKS = ("star-train", "star-cca")


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def make_text_encoder_task(params: dict, inputs: dict):
    """Factory of ``star-text-encoder`` (a ClipTask; the judge's split ``clip`` is refused)."""
    from guidance_repro.data import compositions
    from guidance_repro.metrics.toy_clip import ClipTask, clip_config
    from guidance_repro.star.text import TEXT_TASK

    unknown = sorted(set(params) - {"model", "split", "subset"})
    if unknown:
        raise ReproError(f"{TEXT_TASK}.{unknown[0]}: unknown parameter (known: model, split, subset)")
    split = params.get("split", "train")
    if split == "clip":
        raise ReproError(f"{TEXT_TASK}.split: 'clip' is the judge CLIP's split; the text encoder must not share it")
    if "data" not in inputs:
        raise ReproError(f"--input data=PATH: task {TEXT_TASK} needs the compositions artifact")
    cfg = clip_config(params.get("model"), TEXT_TASK)
    data = compositions.load(inputs["data"], split)
    n = min(len(data["images"]), int(params.get("subset") or len(data["images"])))
    return ClipTask(TEXT_TASK, data["images"][:n], data["captions"][:n], cfg)


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, C) -> (N, size, size, C) by box averaging (S a multiple of size)."""
    S = images.shape[1]
    if S == size:
        return images
    if S % size:
        raise ReproError(f"star.low.image_size: {size} does not divide the image size {S}")
    f = S // size
    x = images.reshape(len(images), size, f, size, f, images.shape[-1]).astype(np.float32).mean((2, 4))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def tokenizer_at(path: str | Path, image_size: int, patch_nums):
    """The msvq tokenizer of ``path`` with the same weights at another image size and schedule
    (as STAR reuses VAR's VQVAE at 256 and 512 px); its per-scale hit statistics are not carried."""
    from guidance_repro.var.msvq import MSVQConfig, MSVQModel, load_msvq
    tok = load_msvq(path)
    cfg = dict(tok.cfg.to_dict(), image_size=int(image_size), patch_nums=[int(p) for p in patch_nums])
    if cfg["image_size"] == tok.cfg.image_size and tuple(cfg["patch_nums"]) == tuple(tok.cfg.patch_nums):
        return tok
    new = MSVQModel(MSVQConfig.from_dict(cfg, key=f"{path}@{image_size}px"))
    state = {k: v for k, v in tok.state_dict().items() if k != "quantize.ema_vocab_hit_SV"}
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or missing != ["quantize.ema_vocab_hit_SV"]:
        raise ReproError(f"{path}: tokenizer does not carry to {image_size}px ({missing or unexpected})")
    return new.eval()


def load_tokens(path: str | Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in ("codes", "captions", "image_size", "patch_nums")}
    except (OSError, KeyError, ValueError) as exc:
        raise ReproError(f"{path}: not a STAR tokens file (codes, captions, image_size, patch_nums: {exc})") from None
    out["codes"] = out["codes"].astype(np.int64)
    out["image_size"], out["patch_nums"] = int(out["image_size"]), tuple(int(p) for p in out["patch_nums"])
    if len(out["codes"]) != len(out["captions"]):
        raise ReproError(f"{path}: {len(out['codes'])} token rows for {len(out['captions'])} captions")
    return out


def load_star(path: str | Path) -> STAR:
    """A STAR model file written by the training loop (star-train / star-cca)."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    obj = load_model_file(path)
    if obj.get("task") not in STAR_TASKS or "model_config" not in obj:
        raise ReproError(f"{path}: not a star-train / star-cca model file")
    model = STAR(STARConfig.from_dict(obj["model_config"], key=f"{path}:model_config"))
    load_state_strict(model, obj["model"], path)
    return model.eval()


class _STARData:
    """Tokens + tokenizer + frozen text encoder shared by the STAR tasks."""

    def _load_data(self, inputs: dict) -> None:
        from guidance_repro.star.text import ToyTextEncoder
        for k in ("codes", "tokenizer", "text_encoder"):
            if k not in inputs:
                raise ReproError(f"inputs.{k}: the {self.name} task needs the tokens, the msvq "
                                 "tokenizer and the text encoder")
        t = load_tokens(inputs["codes"])
        self.codes, self.image_size, self.patch_nums = t["codes"], t["image_size"], t["patch_nums"]
        self.tokenizer = tokenizer_at(inputs["tokenizer"], self.image_size, self.patch_nums)
        self.tokenizer.requires_grad_(False)
        self.text = ToyTextEncoder(inputs["text_encoder"], "inputs.text_encoder")
        self.tokens = self.text.tokenize(t["captions"])  # once: the BPE is the slow part
        self.empty_tokens = self.text.tokenize([""])

    def _check(self, cfg: STARConfig) -> None:
        tk = self.tokenizer.cfg
        if (tuple(cfg.patch_nums) != tuple(self.patch_nums) or cfg.vocab_size != tk.codebook_size
                or cfg.code_dim != tk.code_dim):
            raise ReproError(f"params.model.patch_nums: the model (patch_nums {list(cfg.patch_nums)}, vocab "
                             f"{cfg.vocab_size}, code_dim {cfg.code_dim}) does not fit the tokens/tokenizer "
                             f"({list(self.patch_nums)}, {tk.codebook_size}, {tk.code_dim})")
        if cfg.text_dim != self.text.dim or cfg.text_len != self.text.context_length:
            raise ReproError(f"params.model.text_dim: the model expects text {cfg.text_dim}-d x {cfg.text_len}, "
                             f"the text encoder gives {self.text.dim}-d x {self.text.context_length}")
        if self.codes.ndim != 2 or self.codes.shape[1] != cfg.seq_len:
            raise ReproError(f"tokens {self.codes.shape} do not fit L = {cfg.seq_len}")

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.codes)

    def get_batch(self, indices: np.ndarray):
        codes = torch.from_numpy(self.codes[indices])
        return {"codes": codes, "text": self.tokens[torch.from_numpy(np.asarray(indices, np.int64))],
                "x_in": self.tokenizer.var_input(codes).cpu()}

    def on_device(self, device) -> None:
        self.tokenizer.to(device)
        self.text.to(device)

    def _batch(self, model, batch):
        dev = next(model.parameters()).device
        cond = self.text.encode_tokens(batch["text"].to(dev))
        return batch["codes"].to(dev), batch["x_in"].to(dev), cond, self.text.encode_tokens(self.empty_tokens)

    def param_groups(self, model: nn.Module, wd: float) -> list[dict]:
        # as VAR: no weight decay on biases, norms' scales, position/level embeddings, attention scales
        no = ("pos_", "lvl_embed", "scale_mul")
        ok = [n for n, p in model.named_parameters() if p.ndim >= 2 and not any(s in n for s in no)]
        decay = [p for n, p in model.named_parameters() if n in ok]
        other = [p for n, p in model.named_parameters() if n not in ok]
        return [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]


def _init_state(path: str | Path, key: str) -> tuple[dict, STARConfig]:
    from guidance_repro.train.checkpoint import load_model_file
    obj = load_model_file(path)
    if obj.get("task") not in STAR_TASKS:
        raise ReproError(f"{key}: {path} is not a star-train / star-cca model file")
    return obj["model"], STARConfig.from_dict(obj["model_config"], key=f"{path}:model_config")


class STARTrainTask(_STARData):
    """TrainTask ``star-train`` (module doc). params: ``model`` (STARConfig fields; vocab_size,
    code_dim, patch_nums, text_dim, text_len default to the tokenizer's, tokens' and text
    encoder's; ignored with ``init`` except ``drop_path`` and ``text_dropout``).
    inputs: ``codes``, ``tokenizer``, ``text_encoder``, optional ``init``."""

    name = "star-train"

    def __init__(self, params: dict, inputs: dict):
        p = dict(params)
        model = dict(p.pop("model", {}))
        if p:
            raise ReproError(f"params.{sorted(p)[0]}: unknown {self.name} parameter")
        self._load_data(inputs)
        self.init_state = None
        if "init" in inputs:
            state, base = _init_state(inputs["init"], "inputs.init")
            extra = {k: model[k] for k in ("drop_path", "text_dropout") if k in model}
            base = STARConfig.from_dict({**base.to_dict(), **extra}, key="params.model")
            self.init_state, self.cfg = change_schedule(state, base, self.patch_nums)
        else:
            tk = self.tokenizer.cfg
            model = {"vocab_size": tk.codebook_size, "code_dim": tk.code_dim, "patch_nums": list(self.patch_nums),
                     "text_dim": self.text.dim, "text_len": self.text.context_length, **model}
            self.cfg = STARConfig.from_dict(model, key="params.model")
        self._check(self.cfg)

    def build_model(self) -> nn.Module:
        from guidance_repro.train.checkpoint import load_state_strict
        m = STAR(self.cfg)
        if self.init_state is not None:
            load_state_strict(m, copy.deepcopy(self.init_state), "inputs.init")
        return m

    def loss(self, model, batch, step):
        codes, x_in, cond, empty = self._batch(model, batch)
        cond = drop_text(cond, empty, self.cfg.text_dropout if model.training else 0.0)
        logits = model(cond, x_in)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
        return loss, {"ce": loss.item()}


def caption_ids(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B,), first row of each id): equal token rows (= equal captions) share an id."""
    _, ids = torch.unique(tokens, dim=0, return_inverse=True)
    first = torch.full((int(ids.max()) + 1,), len(ids), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, ids, torch.arange(len(ids), device=ids.device), reduce="amin")
    return ids, first


class STARCCATask(_STARData):
    """TrainTask ``star-cca``: CCA (or DPO / unlearning) for text conditions.

    Negatives are the captions rolled by −1 within the micro-batch (cca.md §1.2 with captions for
    labels; ``make_negatives`` on per-batch caption ids, so a rolled caption equal to the true one
    counts as a positive). With probability ``uncond_ratio`` both conditions become the empty
    prompt (the null condition). Prompt dropout off during CCA (VAR's cond_drop_rate 0). Loss:
    guidance/cca.py ``alignment_loss`` on sequence log-likelihoods over all L tokens.
    params: beta, beta_mode, lam, uncond_ratio, method, ``drop_path`` (0). inputs: ``pretrained``
    (a star-train file on the tokens' schedule), ``codes``, ``tokenizer``, ``text_encoder``."""

    name = "star-cca"

    def __init__(self, params: dict, inputs: dict):
        from guidance_repro.guidance.cca import AlignmentParams, effective_beta
        p = dict(params)
        self.hp = AlignmentParams.pop(p, lam=50.0, class_dropout=0.0)
        drop_path = float(p.pop("drop_path", 0.0))
        if p:
            raise ReproError(f"params.{sorted(p)[0]}: unknown {self.name} parameter")
        if "pretrained" not in inputs:
            raise ReproError("inputs.pretrained: the star-cca task needs a star-train model file")
        self._load_data(inputs)
        self.init_state, base = _init_state(inputs["pretrained"], "inputs.pretrained")
        self.cfg = STARConfig.from_dict({**base.to_dict(), "drop_path": drop_path,
                                         "text_dropout": self.hp.class_dropout}, key="params")
        self._check(self.cfg)
        self.reference = self.build_model()
        self.reference.requires_grad_(False)
        self.beta_eff = effective_beta(self.hp.beta, self.hp.beta_mode, self.cfg.seq_len)

    def build_model(self) -> nn.Module:
        from guidance_repro.train.checkpoint import load_state_strict
        m = STAR(self.cfg)
        load_state_strict(m, copy.deepcopy(self.init_state), "inputs.pretrained")
        return m

    def on_device(self, device) -> None:
        super().on_device(device)
        self.reference.to(device)

    def loss(self, model, batch, step):
        from guidance_repro.guidance.cca import alignment_loss, make_negatives
        codes, x_in, cond, empty = self._batch(model, batch)
        B = len(codes)
        ids, first = caption_ids(batch["text"].to(codes.device))
        null = len(first)
        pos, neg, masked = make_negatives(ids, null, self.hp.uncond_ratio)
        c2 = torch.cat([pos, neg])
        cond2 = cond.take(first[c2.clamp(max=null - 1)]).where(c2 == null, empty)
        cond2 = drop_text(cond2, empty, self.cfg.text_dropout if model.training else 0.0)
        x2, i2 = torch.cat([x_in, x_in]), torch.cat([codes, codes])
        logp = sequence_logp(model, i2, x2, cond2)
        self.reference.train()  # dropout active in the reference too, as the official code
        with torch.no_grad():
            ref = sequence_logp(self.reference, i2, x2, cond2)
        gap = logp - ref
        loss = alignment_loss(self.hp.method, gap[:B], gap[B:], masked, self.beta_eff, self.hp.lam)
        return loss, {"gap_pos": gap[:B].mean().item(), "gap_neg": gap[B:].mean().item(),
                      "masked": masked.float().mean().item(), "beta_eff": self.beta_eff}


def make_train_task(params: dict, inputs: dict) -> STARTrainTask:
    return STARTrainTask(params, inputs)


def make_cca_task(params: dict, inputs: dict) -> STARCCATask:
    return STARCCATask(params, inputs)


def encode_split(tokenizer_path: str | Path, data: str | Path, split: str, image_size: int, patch_nums,
                 num: int = 0) -> dict:
    """Tokens file arrays of a compositions split at ``image_size`` (box-downsampled) and schedule."""
    from guidance_repro.data import compositions
    from guidance_repro.star.text import first_item_class
    d = compositions.load(data, split)
    images, caps, cats = d["images"], d["captions"], first_item_class(d["item_class"])
    if num:
        images, caps, cats = images[:num], caps[:num], cats[:num]
    tok = tokenizer_at(tokenizer_path, image_size, patch_nums)
    codes = tok.encode(downsample(images, image_size))
    return {"codes": codes.astype(np.int64), "captions": caps, "categories": cats,
            "image_size": np.array(image_size), "patch_nums": np.asarray(tok.cfg.patch_nums, np.int64)}
