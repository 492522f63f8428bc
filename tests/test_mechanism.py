"""Mechanism metrics and their regression rules: the two breakages of issue 24 (LlamaGen CFG
ignoring its scale; the CCA rolled-negative term's sign flipped) are caught through the real
commands (`train`, `llamagen-mechanism`, `regression-check`) on a tiny fixture, with the rules of
the committed expected file; the clean code passes them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT
from guidance_repro.cli import main
from guidance_repro.guidance import cca, cfg

pytestmark = pytest.mark.usefixtures("one_thread")

EXPECTED = ROOT / "tests" / "regression" / "expected.json"
MODEL = dict(vocab_size=32, grid=4, num_classes=5, dim=32, n_layer=1, n_head=2, multiple_of=16)


@pytest.fixture(scope="module")
def lg_fixture(tmp_path_factory):
    """Codes with a class structure (so that a margin between classes exists) and a GPT pretrained
    10 steps on them by the real `train` command."""
    d = tmp_path_factory.mktemp("mechanism")
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 5
    codes = (rng.integers(0, 8, (80, 4, 4)) + 6 * labels[:, None, None]) % 32
    np.savez(d / "codes.npz", codes=codes, labels=labels)
    np.savez(d / "held.npz", codes=codes[:40], labels=labels[:40])
    params = {"model": MODEL, "train": {"steps": 10, "batch_size": 16, "lr": 3e-3, "seed": 0}}
    assert main(["train", "--task", "llamagen-pretrain", "--params", json.dumps(params),
                 "--input", f"codes={d / 'codes.npz'}", "--out", str(d / "pre.pt"), "--no-progress"]) == 0
    rules = [r for r in json.loads(EXPECTED.read_text())["mechanism"]
             if r["files"].startswith("cca_llamagen/")]
    assert len(rules) == 5
    (d / "expected.json").write_text(json.dumps({"mechanism": rules}))
    return d


def mechanism_check(d, name, capsys):
    """`llamagen-mechanism` into results-<name>/cca_llamagen/mechanism/S.json, then
    `regression-check` with the committed LlamaGen rules: (exit code, stderr, metrics)."""
    out = d / f"results-{name}" / "cca_llamagen" / "mechanism" / "S.json"
    assert main(["llamagen-mechanism", "--pretrained", str(d / "pre.pt"),
                 "--input", f"train_codes={d / 'codes.npz'}", "--input", f"codes={d / 'held.npz'}",
                 "--num", "40", "--beta", "16", "--lam", "10", "--beta-mode", "per_token",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    rc = main(["regression-check", "--results", str(d / f"results-{name}"), "--expected", str(d / "expected.json")])
    return rc, capsys.readouterr(), json.loads(out.read_text())


def test_clean_code_passes_the_mechanism_rules(lg_fixture, capsys):
    rc, cap, m = mechanism_check(lg_fixture, "clean", capsys)
    assert rc == 0, cap.err
    assert "5 mechanism rules hold" in cap.out
    assert abs(m["cfg_kl"]["s1"]) < 1e-9 < m["cfg_kl"]["s1.5"] < m["cfg_kl"]["s2"] < m["cfg_kl"]["s3"]
    assert min(m["cca_margin_rise"].values()) > 0.1


def test_cfg_ignoring_its_scale_is_caught(lg_fixture, capsys, monkeypatch):
    monkeypatch.setattr(cfg, "cfg_combine", lambda cond, uncond, scale: cond)
    rc, cap, m = mechanism_check(lg_fixture, "cfg-ignored", capsys)
    assert rc == 2 and max(m["cfg_kl"].values()) < 1e-9
    fails = [line for line in cap.err.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 1 and fails[0].startswith("FAIL [mechanism] cca_llamagen/mechanism/S.json: rule "
                                                   "increasing on cfg_kl.s1")
    assert "1 mechanism" in cap.err


def test_cca_negative_sign_flipped_is_caught(lg_fixture, capsys, monkeypatch):
    original = cca.negative_weights

    def flipped(masked, lam):
        w, s = original(masked, lam)
        return w, -s

    monkeypatch.setattr(cca, "negative_weights", flipped)
    rc, cap, m = mechanism_check(lg_fixture, "sign-flipped", capsys)
    assert rc == 2 and max(m["cca_margin_rise"].values()) < 0
    fails = [line for line in cap.err.splitlines() if line.startswith("FAIL ")]
    assert fails == [line for line in fails if "rule positive on cca_margin_rise" in line] and len(fails) == 1
    assert fails[0].startswith("FAIL [mechanism]")
