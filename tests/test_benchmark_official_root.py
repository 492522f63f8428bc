"""The side-by-side benchmarks (benchmarks/ar_vs_official.py, cca_finetune_step.py) refuse a
missing or wrong official clone up front, naming the path, before any model is built."""

import importlib.util

import pytest

from guidance_repro.errors import ReproError
from conftest import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("script, option", [("ar_vs_official", "--official-root"),
                                            ("cca_finetune_step", "--official-root-llamagen")])
def test_a_missing_or_wrong_clone_is_named(script, option, tmp_path):
    main = _script(script).main
    out = str(tmp_path / "out.json")
    with pytest.raises(ReproError, match=rf"{option}: {tmp_path / 'nope'} is not a directory"):
        main([option, str(tmp_path / "nope"), "--out", out])
    (tmp_path / "not_llamagen").mkdir()
    gpt = tmp_path / "not_llamagen" / "autoregressive" / "models" / "gpt.py"
    with pytest.raises(ReproError, match=rf"{option}: {gpt} not found"):
        main([option, str(tmp_path / "not_llamagen"), "--out", out])
    assert not (tmp_path / "out.json").exists()
