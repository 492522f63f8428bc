#!/usr/bin/env python
"""Check the paper-tier text path (star/text.py SD21TextEncoder) offline: build a tiny random
CLIP text tower + character-level CLIP tokenizer in stable-diffusion-2-1's folder layout
(tokenizer/ + text_encoder/), load it the way the STAR paper tier does (local files only), and
check shapes, the padding mask, pooled = final-LN state at the end token, and the empty prompt.

Needs `transformers` (not in the toy environment, so not part of the test suite):
    python -m venv /tmp/tfv && .venv/bin/python -c "import site; print(site.getsitepackages()[0])" \
        > /tmp/tfv/lib/python3.11/site-packages/main_env.pth && /tmp/tfv/bin/pip install "transformers>=4.40"
    /tmp/tfv/bin/python tools/check_sd21_text_encoder.py [FOLDER]
"""
import sys
import tempfile
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from guidance_repro.star.text import SD21TextEncoder  # noqa: E402

root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="sd21-tiny-"))
(root / "tokenizer").mkdir(parents=True, exist_ok=True)
chars = list("abcdefghijklmnopqrstuvwxyz")
vocab = {c: i for i, c in enumerate(chars)}
vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
vocab["<|startoftext|>"] = len(vocab); vocab["<|endoftext|>"] = len(vocab)
tok = CLIPTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
tok.save_pretrained(root / "tokenizer")
cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=77, eos_token_id=vocab["<|endoftext|>"],
                     bos_token_id=vocab["<|startoftext|>"], pad_token_id=vocab["<|endoftext|>"])
torch.manual_seed(0)
CLIPTextModel(cfg).save_pretrained(root / "text_encoder")
enc = SD21TextEncoder(root)
c = enc.encode(["a cat", "dog on a mat", ""])
print("hidden", tuple(c.hidden.shape), "mask", tuple(c.mask.shape), "pooled", tuple(c.pooled.shape))
n = c.mask.sum(1)
print("valid tokens per prompt", n.tolist())
eos = n - 1
assert torch.allclose(c.pooled, c.hidden[torch.arange(3), eos], atol=1e-6), "pooled != final-LN state at EOS"
e = enc.empty(); assert torch.allclose(e.pooled, c.pooled[2:3], atol=1e-6)
print("pooled = final-LN hidden state at the end token; empty prompt = encode(['']): OK; dim", enc.dim)
