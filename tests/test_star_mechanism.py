"""star-mechanism's teacher-forced losses (star/mechanism.py) and their rules in the committed
expected file: they hold for two tiny STAR models trained alike (RoPE and learned absolute
positions), and fail when the text condition or the position code stops reaching the logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guidance_repro.cli import main as cli
from guidance_repro.golden import inputs as gi
from guidance_repro.report import regression
from guidance_repro.report.regression_rules import check_rules

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
LOSS_RULES = [r for r in regression.load_entries(ROOT / "tests" / "regression" / "expected.json")[2]
              if r["files"] == "star/mechanism/*.json" and ".loss." in r["keys"][0]]


@pytest.fixture(scope="module")
def star_dir(tmp_path_factory) -> Path:
    """A tokenizer, a text encoder, tokens with captions and rope-/absolute-positions models,
    each trained 6 steps by the real star-train task and loop."""
    from guidance_repro.star.tasks import STARTrainTask
    from guidance_repro.train.config import TrainConfig
    from guidance_repro.train.loop import train
    d = tmp_path_factory.mktemp("star")
    tok = gi.write_msvq(d)
    text, codes = gi.write_star(d)
    cfg = TrainConfig.from_dict({"steps": 6, "batch_size": 8, "lr": 3e-3, "device": "cpu"})
    for pos in ("rope", "absolute"):
        task = STARTrainTask({"model": {**gi.TINY_STAR, "positions": pos}},
                             {"codes": codes, "tokenizer": tok, "text_encoder": text})
        train(task, cfg, d / f"{pos}.pt", progress=False)
    return d


def mechanism(d: Path, out: Path, absolute: str = "absolute") -> dict[str, float]:
    cli(["star-mechanism", "--model", str(d / "rope.pt"), "--absolute", str(d / f"{absolute}.pt"),
         "--codes", str(d / "star_tokens.npz"), "--tokenizer", str(d / "msvq.pt"),
         "--text-encoder", str(d / "text_encoder.pt"), "--rows", "16", "--out", str(out)])
    return {f"star/mechanism/rope.json:{k}": v for k, v in regression.flatten(json.loads(out.read_text())).items()}


def test_the_loss_rules_cover_text_and_positions():
    assert len(LOSS_RULES) == 4 and all(r["rule"] == "differ" for r in LOSS_RULES)


def test_clean_models_pass_the_loss_rules(star_dir, tmp_path):
    metrics = mechanism(star_dir, tmp_path / "m.json")
    failures, checked, _ = check_rules(metrics, LOSS_RULES)
    assert failures == [] and len(checked) == 4


def test_text_condition_ignored_is_caught(star_dir, tmp_path, monkeypatch):
    from guidance_repro.star.text import ToyTextEncoder
    original = ToyTextEncoder.encode
    monkeypatch.setattr(ToyTextEncoder, "encode", lambda self, captions, batch_size=1000:
                        original(self, [""] * len(captions), batch_size))  # every prompt -> the empty one
    failures, _, _ = check_rules(mechanism(star_dir, tmp_path / "m.json"), LOSS_RULES)
    assert len(failures) == 2 and all("text.loss" in f for f in failures)


def test_rope_not_applied_is_caught(star_dir, tmp_path, monkeypatch):
    from guidance_repro.star import model as star_model
    original = star_model.STAR.run  # attention without the rotation: positions only through lvl_embed

    def run_without_rope(self, h, cond, mask):
        self.rope_angles.zero_()
        return original(self, h, cond, mask)
    monkeypatch.setattr(star_model.STAR, "run", run_without_rope, raising=False)
    failures, _, _ = check_rules(mechanism(star_dir, tmp_path / "m.json"), LOSS_RULES)
    assert len(failures) == 1 and "rope_off" in failures[0]
