"""Importing an official repository's modules from a user's local clone (official_clone.py)."""

import sys

import pytest

from guidance_repro.errors import ReproError
from guidance_repro.official_clone import import_from_clone


def _clone(root):
    (root / "pkg_clone_x" / "models").mkdir(parents=True)
    (root / "helpers_clone_x").mkdir()
    (root / "helpers_clone_x" / "tool.py").write_text("VALUE = 7\n")
    # the official files import their siblings by top-level package names, as LlamaGen's gpt.py
    (root / "pkg_clone_x" / "models" / "net.py").write_text("from helpers_clone_x.tool import VALUE\n")
    return root


def test_imports_by_package_path_and_leaves_sys_path_as_it_was(tmp_path):
    before = list(sys.path)
    net, = import_from_clone(_clone(tmp_path), ["pkg_clone_x.models.net"], "--official-root", "some/repo")
    assert net.VALUE == 7 and sys.path == before


def test_missing_root_or_file_names_the_path(tmp_path):
    with pytest.raises(ReproError, match=rf"--official-root: {tmp_path / 'nope'} is not a directory .*some/repo"):
        import_from_clone(tmp_path / "nope", ["a.b"], "--official-root", "some/repo")
    with pytest.raises(ReproError, match=rf"{tmp_path / 'a' / 'b.py'} not found"):
        import_from_clone(tmp_path, ["a.b"], "--official-root", "some/repo")


def test_an_import_error_of_the_clone_names_the_clone(tmp_path):
    (tmp_path / "broken_clone_x").mkdir()
    (tmp_path / "broken_clone_x" / "m.py").write_text("import not_installed_anywhere_x\n")
    with pytest.raises(ReproError, match=rf"importing from {tmp_path} failed: ModuleNotFoundError"):
        import_from_clone(tmp_path, ["broken_clone_x.m"], "--x", "some/repo")


def test_a_top_level_name_imported_from_elsewhere_is_refused(tmp_path):
    for clone in ("one", "two"):
        (tmp_path / clone / "shadow_clone_x").mkdir(parents=True)
        (tmp_path / clone / "shadow_clone_x" / "m.py").write_text(f"WHERE = {clone!r}\n")
    m, = import_from_clone(tmp_path / "one", ["shadow_clone_x.m"], "--x", "some/repo")
    assert m.WHERE == "one"
    with pytest.raises(ReproError, match="'shadow_clone_x' is already imported from"):
        import_from_clone(tmp_path / "two", ["shadow_clone_x.m"], "--x", "some/repo")
