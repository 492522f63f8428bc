"""STAR's frozen text encoder: hidden states, padding mask and pooled vector of a prompt.

Toy tier: the text tower of a small open_clip CLIP trained in the DAG (task ``star-text-encoder``,
star/tasks.py) on the generators' ``train`` split with its own seed, never the judge
CLIP's model or split. Paper tier: the SD-2.1 CLIP text tower STAR uses (star.md §1:
``CLIPTokenizer`` + ``CLIPTextModel`` of ``stable-diffusion-2-1``, 1024-d, padded to 77), loaded
from a LOCAL folder only (``star.paper.text_encoder_dir``); nothing is fetched at run time.

What STAR takes from the text model (star.md §1): the final-LayerNorm hidden states of every
token (cross-attention keys/values), the padding mask (valid = up to and including the end token)
and the pooled vector = the final-LN state at the end token (HF ``pooler_output``; open_clip's
``argmax`` text pool before the projection). The CFG branch is the encoding of the empty prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from guidance_repro.errors import ReproError
from guidance_repro.star.model import TextCond

TEXT_TASK = "star-text-encoder"


@torch.no_grad()
def clip_text_states(clip: torch.nn.Module, tokens: torch.Tensor) -> TextCond:
    """open_clip CLIP text tower without its projection: TextCond of tokens (B, T)."""
    x = clip.token_embedding(tokens) + clip.positional_embedding
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
    eot = tokens.argmax(-1)  # the end token has the largest id (open_clip's argmax pool)
    mask = torch.arange(tokens.shape[1], device=tokens.device)[None] <= eot[:, None]
    return TextCond(x, mask, x[torch.arange(len(x), device=x.device), eot])


class ToyTextEncoder:
    """The frozen text tower of a ``star-text-encoder`` CLIP file."""

    kind = "toy-clip"

    def __init__(self, path: str | Path, key: str = "inputs.text_encoder"):
        from guidance_repro.metrics.features import file_sha256
        from guidance_repro.metrics.toy_clip import load_clip

        self.clip, cfg = load_clip(path, key, task=TEXT_TASK)
        self.clip.requires_grad_(False)
        self.context_length = int(cfg["text"]["context_length"])
        self.dim = int(cfg["text"]["width"])
        self.sha256 = file_sha256(path)
        self.path = str(path)

    def to(self, device) -> "ToyTextEncoder":
        self.clip.to(device)
        return self

    def tokenize(self, captions) -> torch.Tensor:
        from guidance_repro.metrics.toy_clip import tokenize
        return tokenize(list(captions), self.context_length)

    def encode_tokens(self, tokens: torch.Tensor) -> TextCond:
        dev = next(self.clip.parameters()).device
        return clip_text_states(self.clip, tokens.to(dev))

    def encode(self, captions, batch_size: int = 1000) -> TextCond:
        parts = [self.encode_tokens(self.tokenize(captions[i:i + batch_size]))
                 for i in range(0, len(captions), batch_size)]
        return TextCond.cat(parts)

    def empty(self) -> TextCond:
        return self.encode([""])


class SD21TextEncoder:
    """SD-2.1's CLIP text tower (HF format: ``tokenizer/`` + ``text_encoder/`` under one local
    folder, as in the ``stable-diffusion-2-1`` repository). Needs ``transformers``, which is not
    in the pinned toy environment: the paper-tier environment adds it."""

    kind = "sd21-clip"
    context_length = 77

    def __init__(self, folder: str | Path, key: str = "star.paper.text_encoder_dir"):
        folder = Path(folder) if folder else None
        if folder is None or not folder.is_dir():
            raise ReproError(f"{key}: text encoder folder {str(folder or '')!r} not found (copy "
                             f"stable-diffusion-2-1's tokenizer/ and text_encoder/ there; nothing is downloaded)")
        for sub in ("tokenizer", "text_encoder"):
            if not (folder / sub).is_dir():
                raise ReproError(f"{key}: {folder} has no {sub}/ folder (stable-diffusion-2-1 layout)")
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError:
            raise ReproError(f"{key}: loading the SD-2.1 text encoder needs the 'transformers' package "
                             "(paper-tier environment; not in the toy requirements)") from None
        self.tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True).eval()
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.sha256, self.path = "", str(folder)

    def to(self, device) -> "SD21TextEncoder":
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, captions, batch_size: int = 64) -> TextCond:
        parts = []
        dev = next(self.model.parameters()).device
        for i in range(0, len(captions), batch_size):
            t = self.tokenizer(list(captions[i:i + batch_size]), padding="max_length",
                               max_length=self.context_length, truncation=True, return_tensors="pt")
            out = self.model(input_ids=t.input_ids.to(dev), attention_mask=t.attention_mask.to(dev))
            parts.append(TextCond(out.last_hidden_state, t.attention_mask.to(dev).bool(), out.pooler_output))
        return TextCond.cat(parts)

    def empty(self) -> TextCond:
        return self.encode([""])


def load_text_encoder(kind: str, path: str | Path, key: str):
    if kind == ToyTextEncoder.kind:
        return ToyTextEncoder(path, key)
    if kind == SD21TextEncoder.kind:
        return SD21TextEncoder(path, key)
    raise ReproError(f"{key}: unknown text encoder kind {kind!r} ({ToyTextEncoder.kind} or {SD21TextEncoder.kind})")


def first_item_class(item_class: np.ndarray) -> np.ndarray:
    """Category of a composition (the toy counterpart of MJHQ's ten categories): the class of
    its first item in reading order (every image has at least one item)."""
    return np.asarray(item_class, np.int64)[:, 0]
