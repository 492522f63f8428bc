"""A model file cut short (a full disk, a copy interrupted) stops with a one-line ReproError naming
the file at every cut length: through the loaders and through the sampling commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from guidance_repro.cli import main
from guidance_repro.edm.network import EDMDenoiser
from guidance_repro.edm.task import load_denoiser
from guidance_repro.errors import ReproError
from guidance_repro.llamagen.model import load_gpt
from guidance_repro.train.checkpoint import save_atomic

pytestmark = pytest.mark.usefixtures("one_thread")

CUTS = 100  # cut lengths per file, spread evenly from 0 bytes to one byte short of the whole file


def cut_lengths(size: int) -> list[int]:
    lengths = sorted({i * size // CUTS for i in range(CUTS)} | {size - 1})
    assert lengths[0] == 0 and lengths[-1] == size - 1 and len(lengths) >= CUTS
    return lengths


def unreadable(path: Path) -> str:
    return f"{path}: not a readable plain-data torch file ("


def edm_model_file(path: Path) -> Path:
    """A small edm-fmnist model file in the layout the training loop writes (EMA weights)."""
    model = EDMDenoiser((4, 4, 4), emb=8, label_dim=10)
    save_atomic({"model": model.state_dict(), "task": "edm-fmnist",
                 "model_config": {"kind": "edm-fmnist", "channels": [4, 4, 4], "emb": 8,
                                  "label_dim": 10, "p_mean": -1.2, "p_std": 1.2}}, path)
    return path


@pytest.mark.parametrize("kind", ["llamagen", "edm"])
def test_every_cut_length_names_the_file(tiny_gpt_dir, tmp_path, kind):
    source = tiny_gpt_dir / "gpt.pt" if kind == "llamagen" else edm_model_file(tmp_path / "edm.pt")
    load = load_gpt if kind == "llamagen" else load_denoiser
    whole = source.read_bytes()
    cut = tmp_path / "cut.pt"
    messages = set()
    for length in cut_lengths(len(whole)):
        cut.write_bytes(whole[:length])
        with pytest.raises(ReproError) as info:
            load(cut)
        message = str(info.value)
        assert message.startswith(unreadable(cut)) and "\n" not in message, (length, message)
        messages.add(message)
    assert len(messages) > 1  # not one canned message: the reason of each failure is kept
    cut.write_bytes(whole)
    load(cut)  # the whole file loads


def test_sampling_commands_refuse_a_cut_model_file(tiny_gpt_dir, tmp_path, capsys):
    whole = {"sample-ar": (tiny_gpt_dir / "gpt.pt").read_bytes(),
             "autoguidance-sample": edm_model_file(tmp_path / "edm.pt").read_bytes()}
    out = tmp_path / "samples.npz"
    for command, data in whole.items():
        for length in (0, len(data) // 3, len(data) - 1):
            cut = tmp_path / f"{command}-{length}.pt"
            cut.write_bytes(data[:length])
            if command == "sample-ar":
                args = ["sample-ar", "--model", str(cut), "--tokenizer", str(tmp_path / "tok.pt"),
                        "--num", "10"]
            else:
                args = ["autoguidance-sample", "--main", str(cut), "--method", "none", "--num", "10"]
            assert main([*args, "--out", str(out), "--no-progress"]) == 2, (command, length)
            err = capsys.readouterr().err
            assert err.startswith(f"error: {unreadable(cut)}") and err.count("\n") == 1, err
            assert not out.exists()
