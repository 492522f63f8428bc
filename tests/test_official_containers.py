"""Loader robustness for the real LlamaGen files (issue 20 item 7): an ``args`` Namespace inside a
checkpoint under weights_only loading, the four containers LlamaGen's sampler accepts, wrapper
prefixes, bf16 upcasting. Files are written as the official trainers write them (a tiny width,
the official key names)."""

from __future__ import annotations

import argparse
import pickle

import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.llamagen import official
from guidance_repro.train.checkpoint import load_model_file

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(dim=32, n_layer=2, n_head=2, vocab_size=64, num_classes=10)


def tiny_state_dict(seed: int = 0) -> dict:
    layout = official.gpt_layout(official.official_gpt_config("B", 64, **TINY))
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in layout.items()}


def _load(path, **kw):
    return official.load_official_gpt(path, "B", 64, **TINY, **kw)


def test_train_c2i_layout_with_args_namespace(tmp_path):
    # train_c2i.py: {"model", "optimizer", "steps", "args"} with args an argparse.Namespace
    sd = tiny_state_dict()
    args = argparse.Namespace(gpt_model="GPT-B", image_size=384, lr=1e-4, global_batch_size=256)
    path = tmp_path / "c2i_B_384.pt"
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "steps": 5000,
                "args": args}, path)
    model = _load(path)
    assert torch.equal(model.output.weight, sd["output.weight"])
    obj = load_model_file(path)  # the loop's loader accepts it too
    assert obj["args"].gpt_model == "GPT-B" and obj["steps"] == 5000


class NotAllowed:  # any class but argparse.Namespace is still refused
    pass


def test_other_classes_are_still_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": tiny_state_dict(), "args": NotAllowed()}, path)
    with pytest.raises(ReproError, match="not a plain-tensor torch file"):
        _load(path)
    with pytest.raises(ReproError, match="not a readable plain-data torch file"):
        load_model_file(path)


@pytest.mark.parametrize("container", ["model", "module", "state_dict", None])
def test_containers_and_prefixes(tmp_path, container):
    sd = tiny_state_dict(1)
    prefixed = {("module._orig_mod." if container == "module" else
                 "_orig_mod." if container == "state_dict" else "") + k: v for k, v in sd.items()}
    path = tmp_path / "ckpt.pt"
    torch.save(prefixed if container is None else {container: prefixed}, path)
    model = _load(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_prefix_collision_names_the_key(tmp_path):
    sd = tiny_state_dict()
    sd["module.norm.weight"] = sd["norm.weight"]
    path = tmp_path / "ckpt.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(ReproError, match="'norm.weight' occurs twice"):
        _load(path)


def test_bf16_file_upcast(tmp_path):
    sd = {k: v.to(torch.bfloat16) for k, v in tiny_state_dict(2).items()}
    path = tmp_path / "bf16.pt"
    torch.save(sd, path)
    assert _load(path).output.weight.dtype == torch.bfloat16  # as stored without the option
    model = _load(path, upcast=True)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(model.output.weight, sd["output.weight"].float())


def test_save_official_gpt_round_trip(tmp_path):
    model = _load_from(tiny_state_dict(3))
    path = tmp_path / "out.pt"
    official.save_official_gpt(model, path, extra={"cca_recipe": {"accumulation_reduce": "sum"}})
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "cca_recipe"}
    again = _load(path)  # strict: every official key, nothing else
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def _load_from(sd):
    return official.load_official_gpt(None, "B", 64, state_dict={"model": sd}, **TINY)
