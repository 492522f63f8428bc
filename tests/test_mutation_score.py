"""tools/mutation_score.py: every breakage of its list applies to today's source (each text it
replaces occurs exactly once), changes the file, and never touches the checkout."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from conftest import ROOT
from guidance_repro.errors import ReproError


def load_tool():
    spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "tools" / "mutation_score.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutation_score"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_every_mutation_applies_to_a_copy_and_changes_it(tmp_path):
    tool = load_tool()
    names = {m.name for m in tool.MUTATIONS}
    assert len(names) == len(tool.MUTATIONS) == 13
    for m in tool.MUTATIONS:
        code = tmp_path / m.name
        files = {rel for rel, _, _ in m.edits}
        for rel in files:
            (code / tool.PKG / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / tool.PKG / rel, code / tool.PKG / rel)
        tool.mutate(code, m)
        for rel in files:
            assert (code / tool.PKG / rel).read_text() != (ROOT / tool.PKG / rel).read_text(), m.name
        assert m.rules and m.targets and all(t.startswith("results/") for t in m.targets)


def test_a_mutation_whose_text_moved_is_an_error(tmp_path):
    tool = load_tool()
    m = tool.Mutation("x", "x", (("guidance/cfg.py", "no such text", "y"),), ("r",), ("results/t",))
    (tmp_path / tool.PKG / "guidance").mkdir(parents=True)
    shutil.copy2(ROOT / tool.PKG / "guidance" / "cfg.py", tmp_path / tool.PKG / "guidance" / "cfg.py")
    with pytest.raises(ReproError, match="holds 0 copies"):
        tool.mutate(tmp_path, m)
