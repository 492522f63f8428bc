"""ImageReward code path, offline, on a checkpoint with random weights of the package's own model.

The session fixture builds (or refreshes) .venv-imagereward with tools/setup-imagereward-env.sh
(about a second when up to date). A failure to build FAILS these tests; it never skips them.
Inside that environment it builds ``ImageReward.ImageReward`` (BLIP ViT-L/16 vision tower, fixed by
the package; a 2-layer BERT MED text encoder from a shrunk med_config.json; a 30-token vocab.txt
written here), saves the random state_dict, and scores the test images with the package's own
``model.score(prompt, PIL image)``: the independent reference for our batched worker.
Runtime: ~5 min wall on a 2-core machine at load ~14 (1 min 45 s CPU); expect ~2 min on idle
2 cores. The costs: the ViT-L builds (one per worker run) and a 1.2 GB float32 checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz
from guidance_repro.metrics import imagereward as ir
from guidance_repro.metrics import imagereward_commands

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "tools" / "setup-imagereward-env.sh"
VENV = Path(os.environ.get("GUIDANCE_REPRO_IMAGEREWARD_VENV", ROOT / ".venv-imagereward"))

WORDS = ["a", "red", "cat", "on", "blue", "car", "dog", "in", "the", "snow", "photo", "of"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CAPTIONS = ["a red cat", "a red cat", "a blue car in the snow", "photo of a dog"]

# A BERT-base MED config (the layout of ImageReward's med_config.json: cross-attention on, BERT
# base sizes), shrunk to 2 layers and a small vocab. hidden_size stays 768: ImageReward's MLP takes
# 768 inputs. encoder_width is overwritten by the package with the ViT width (1024).
MED_CONFIG = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 256,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 12,
    "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": None,
    "encoder_width": 768, "add_cross_attention": True,
}

# Runs in .venv-imagereward: random ImageReward model -> state_dict, plus reference rewards from the
# package's own score() API. argv: med_config, tokenizer dir, checkpoint out, samples npz, json out.
BUILD = r"""
import json, sys, importlib
import numpy as np, torch
from PIL import Image
import ImageReward as RM
from transformers import BertTokenizer
med, tok_dir, ckpt, samples, out = sys.argv[1:]
def tokenizer():  # what the package's init_tokenizer does, from a local folder
    t = BertTokenizer.from_pretrained(tok_dir, local_files_only=True)
    t.add_special_tokens({"bos_token": "[DEC]"})
    t.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    t.enc_token_id = t.additional_special_tokens_ids[0]
    return t
importlib.import_module("ImageReward.models.BLIP.blip_pretrain").init_tokenizer = tokenizer
torch.manual_seed(0)
model = RM.ImageReward(med_config=med, device="cpu").eval()
# The package's MLP init (std 1/769 in every layer, zero bias) shrinks the output ~1e-7 times, so
# all rewards equal -mean/std; std 1/sqrt(fan_in) spreads them and lets the test tell images apart.
for layer in model.mlp.layers:
    if isinstance(layer, torch.nn.Linear):
        torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
torch.save(model.state_dict(), ckpt)
data = np.load(samples)
ref = [model.score(str(c), Image.fromarray(im)) for im, c in zip(data["images"], data["captions"])]
json.dump({"rewards": ref, "n_params": sum(p.numel() for p in model.parameters()),
           "vocab": len(model.blip.tokenizer)}, open(out, "w"))
"""


@pytest.fixture(scope="session")
def ir_python() -> Path:
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=3000)
    if proc.returncode != 0:
        pytest.fail(f"tools/setup-imagereward-env.sh failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    python = VENV / "bin" / "python"
    assert python.exists(), f"{python} missing after setup"
    return python


@pytest.fixture(scope="session")
def assets(ir_python, tmp_path_factory):
    d = tmp_path_factory.mktemp("imagereward")
    tok = d / "tokenizer"
    tok.mkdir()
    vocab = SPECIAL + WORDS + [f"##{c}" for c in "abcdefghijklmno"]
    (tok / "vocab.txt").write_text("\n".join(vocab) + "\n")
    med = d / "med_config.json"
    med.write_text(json.dumps({**MED_CONFIG, "vocab_size": len(vocab) + 2}))  # + [DEC], [ENC]
    rng = np.random.default_rng(0)
    samples = d / "samples.npz"
    # different sizes than 224 on purpose: the package's preprocess resizes and crops
    save_npz(samples, images=rng.integers(0, 256, (len(CAPTIONS), 48, 64, 3), dtype=np.uint8),
             captions=np.array(CAPTIONS))
    ckpt, ref = d / "ImageReward.pt", d / "reference.json"
    proc = subprocess.run([str(ir_python), "-I", "-c", BUILD, str(med), str(tok), str(ckpt), str(samples), str(ref)],
                          env=ir.worker_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(ref.read_text())
    assert info["vocab"] == len(vocab) + 2
    return {"dir": d, "tokenizer": tok, "med_config": med, "samples": samples, "checkpoint": ckpt,
            "python": ir_python, "reference": np.array(info["rewards"])}


def _run(a, out, **kw):
    args = dict(checkpoint=a["checkpoint"], med_config=a["med_config"], tokenizer=a["tokenizer"],
                python=a["python"], device="cpu", batch_size=3)
    args.update(kw)
    return ir.compute_imagereward(a["samples"], out, **args)


def _cli(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    imagereward_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_end_to_end_matches_package_score_and_is_deterministic(assets, tmp_path):
    out1 = tmp_path / "ir1.json"
    m = _run(assets, out1)
    on_disk = json.loads(out1.read_text())
    rewards = np.array(on_disk["rewards"])
    assert rewards.shape == (len(CAPTIONS),) and np.all(np.isfinite(rewards))
    # batched worker (batch 3: one full and one partial batch) == the package's score(), per image
    np.testing.assert_allclose(rewards, assets["reference"], rtol=0, atol=1e-4)
    assert np.ptp(rewards) > 1e-3, "rewards do not depend on the image"
    # aggregates, against a direct computation
    assert on_disk["count"] == 4 and on_disk["n_prompts"] == 3
    assert on_disk["mean_reward"] == pytest.approx(rewards.mean())
    by_prompt = {c: [r for r, c2 in zip(rewards, CAPTIONS) if c2 == c] for c in set(CAPTIONS)}
    assert on_disk["mean_of_prompt_means"] == pytest.approx(np.mean([np.mean(v) for v in by_prompt.values()]))
    proto = on_disk["protocol"]
    import hashlib
    assert proto["checkpoint_sha256"] == hashlib.sha256(assets["checkpoint"].read_bytes()).hexdigest()
    assert proto["versions"]["image-reward"] == "1.5"
    assert tuple(map(int, proto["versions"]["transformers"].split(".")[:2])) < (4, 56)
    assert {"torch", "timm", "fairscale", "tokenizers"} <= set(proto["versions"])
    assert proto["device"] == "cpu" and proto["unexpected_checkpoint_keys"] == []
    assert m["rewards"] == on_disk["rewards"]
    # same input again, through the CLI command, another batch size, the default python: same rewards
    out2 = tmp_path / "ir2.json"
    _cli(["imagereward", "--samples", str(assets["samples"]), "--checkpoint", str(assets["checkpoint"]),
          "--med-config", str(assets["med_config"]), "--tokenizer", str(assets["tokenizer"]),
          "--out", str(out2), "--device", "cpu", "--batch-size", "4"])  # default --python
    assert Path(json.loads(out2.read_text())["protocol"]["python"]) == assets["python"]
    again = json.loads(out2.read_text())
    np.testing.assert_allclose(again["rewards"], rewards, rtol=0, atol=1e-5)
    assert again["protocol"]["checkpoint_sha256"] == proto["checkpoint_sha256"]


@pytest.mark.parametrize("key", ["checkpoint", "med_config", "tokenizer", "python"])
def test_missing_path_names_the_config_key(assets, tmp_path, key):
    with pytest.raises(ReproError, match=rf"evaluation\.imagereward\.{key}: .*does not exist|"
                                         rf"evaluation\.imagereward\.{key}: .*no vocab\.txt"):
        _run(assets, tmp_path / "x.json", **{key: tmp_path / "nowhere"})
    assert not (tmp_path / "x.json").exists()


def test_settings_from_config_names_missing_keys():
    with pytest.raises(ReproError, match=r"evaluation\.imagereward: missing"):
        ir.settings_from_config({"evaluation": {}})
    with pytest.raises(ReproError, match=r"evaluation\.imagereward\.med_config: missing"):
        ir.settings_from_config({"evaluation": {"imagereward": {"checkpoint": "a.pt"}}})
    s = ir.settings_from_config({"evaluation": {"imagereward": {"checkpoint": "a", "med_config": "b",
                                                                "tokenizer": "c", "batch_size": 8}}})
    assert s == {"checkpoint": "a", "med_config": "b", "tokenizer": "c", "python": None,
                 "device": "auto", "batch_size": 8}


def test_bad_samples_file(assets, tmp_path):
    bad = tmp_path / "bad.npz"
    save_npz(bad, images=np.zeros((2, 8, 8, 3), np.float32), captions=np.array(["a", "b"]))
    with pytest.raises(ReproError, match="images must be uint8"):
        ir.compute_imagereward(bad, tmp_path / "o.json", checkpoint=assets["checkpoint"],
                               med_config=assets["med_config"], tokenizer=assets["tokenizer"],
                               python=assets["python"])
    save_npz(bad, images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ReproError, match="lacks the array 'captions'"):
        ir.load_samples(bad)


def test_worker_errors_are_relayed(assets, tmp_path):
    """A checkpoint with only the MLP keys, and a vocab that does not match med_config: one-line errors."""
    partial = tmp_path / "partial.pt"
    script = ("import sys, torch; s = torch.load(sys.argv[1], weights_only=True, mmap=True); "
              "torch.save({k: v for k, v in s.items() if k.startswith('mlp.')}, sys.argv[2])")
    subprocess.run([str(assets["python"]), "-I", "-c", script, str(assets["checkpoint"]), str(partial)], check=True)
    with pytest.raises(ReproError, match=r"evaluation\.imagereward\.checkpoint: checkpoint .* lacks \d+ model keys"):
        _run(assets, tmp_path / "o.json", checkpoint=partial)
    med = tmp_path / "med.json"
    med.write_text(json.dumps({**json.loads(assets["med_config"].read_text()), "vocab_size": 30524}))
    with pytest.raises(ReproError, match=r"evaluation\.imagereward\.med_config: tokenizer .* tokens "
                                         r"\(with \[DEC\], \[ENC\]\) but .* vocab_size=30524"):
        _run(assets, tmp_path / "o.json", med_config=med)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ReproError, match=r"evaluation\.imagereward\.checkpoint: cannot load .*garbage\.pt"):
        _run(assets, tmp_path / "o.json", checkpoint=garbage)
    assert not (tmp_path / "o.json").exists()


def test_summarize_matches_direct_computation():
    rng = np.random.default_rng(1)
    caps = np.array(["p%d" % i for i in rng.integers(0, 5, 40)])
    r = rng.normal(size=40)
    s = ir.summarize(r, caps)
    groups = {c: r[caps == c] for c in set(caps.tolist())}
    assert s["mean_of_prompt_means"] == pytest.approx(sum(g.mean() for g in groups.values()) / len(groups))
    assert s["mean_reward"] == pytest.approx(r.mean()) and s["count"] == 40 and s["n_prompts"] == len(groups)


def test_worker_imports_only_allowed_modules():
    import ast

    tree = ast.parse(ir.WORKER.read_text())
    roots = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in (n.names if isinstance(n, ast.Import) else [n])}
    allowed = set(sys.stdlib_module_names) | {"ImageReward", "torch", "numpy", "PIL"}
    assert roots <= allowed, roots - allowed
