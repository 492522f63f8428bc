"""tools/write_results_doc.py (the README's generated results block, docs/results.md, the copied
figures) on a small fake results tree, and the committed README and docs: one marker pair, the
quick start the fresh-clone checker runs, relative links that point at files."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import struct
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("write_results_doc", ROOT / "tools" / "write_results_doc.py")
wrd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wrd)

CLAIMS = [  # paper, experiment, claim, verdict
    ("cca", "cca-llamagen", "CCA lowers the guidance-free FID", "holds"),
    ("cca", "cca-llamagen", "guidance-free CCA matches the best CFG FID", "does not hold"),
    ("cca", "cca-var", "CCA lowers the guidance-free FID", "inconclusive"),
    ("autoguidance", "autoguidance-fmnist", "autoguidance beats CFG in best FID", "holds"),
    ("autoguidance", "autoguidance-fmnist", "ablation order", ""),
    ("star", "star-resolution", "RoPE beats absolute PE", "does not hold"),
]
MATRIX = [  # family, model, method, point, fid, recall, note
    ("llamagen", "S", "guidance-free", "—", "123.456", "0.0417", ""),
    ("llamagen", "S", "CFG", "cfg = 3", "87.21", "0.2234", ""),
    ("llamagen", "S", "CCA", "β = 49, λ = 10", "94.24", "0.3012", "best FID over the sweep"),
    ("fmnist", "main", "guidance-free", "—", "148.04", "0.324", ""),
    ("fmnist", "main", "CFG", "w = 2", "69.97", "0.561", ""),
    ("fmnist", "main", "CCA", "", "", "", "n/a: CCA fine-tunes an AR model's likelihood"),
]
README_BEFORE = "# project\n\nIntro text that must stay.\n\n"
README_AFTER = "\n\n## Later section\n\nMore text | that must stay.\n"


def _png(path: Path, shade: int) -> None:
    """A valid 2x2 grey PNG (distinct bytes per shade), written without an image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + bytes([shade, shade]) for _ in range(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _record(hardware: dict) -> dict:
    return {"created": "2031-02-03T04:05:06+00:00", "git_commit": "abcdef1234567890" * 2 + "abcdef12",
            "git_dirty": False, "hardware": hardware, "config": {"tier": "toy"}}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    res = tmp_path / "results"
    res.mkdir()
    _write_csv(res / "claims.csv", ["paper", "experiment", "model", "claim", "verdict"],
               [(p, e, "", c, h) for p, e, c, h in CLAIMS])
    (res / "claims.md").write_text("# Claims against the papers\n\nfixture claims table 4242.42\n\n"
                                   "## CCA (Chen et al., ICLR 2025)\n\n| a |\n|---|\n| 1 |\n")
    _write_csv(res / "matrix.csv", ["family", "model", "method", "point", "fid", "precision",
                                    "recall", "note"],
               [(f, m, me, pt, fid, "0.5", rec, note) for f, m, me, pt, fid, rec, note in MATRIX])
    (res / "matrix.md").write_text("# Cross-method matrix (beyond the papers)\n\nfixture matrix 777.7\n")
    hw = {"processor": "", "platform": "Linux-fixture", "cpu_count": 7, "memory_gib": 3.5,
          "cpu": {"model": "Fixture CPU 9000", "capability": "AVX512", "flags": {"avx2": True}}}
    (res / "run_record.json").write_text(json.dumps(_record(hw)))
    for shade, (src, _, _, _) in enumerate(wrd.FIGURES):
        _png(res / src, 40 * shade)
    return res


@pytest.fixture
def readme(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(README_BEFORE + f"{wrd.BEGIN}\nold numbers 1.0\n{wrd.END}" + README_AFTER)
    return path


def _run(results: Path, readme: Path) -> tuple[int, Path, Path]:
    doc, figs = readme.parent / "docs" / "results.md", readme.parent / "docs" / "figures"
    rc = wrd.main(["--results", str(results), "--readme", str(readme), "--doc", str(doc),
                   "--figures-dir", str(figs)])
    return rc, doc, figs


def _block(text: str) -> str:
    return text[text.index(wrd.BEGIN):text.index(wrd.END)]


def test_block_holds_the_fixture_numbers_and_nothing_else_changes(results, readme):
    rc, doc, figs = _run(results, readme)
    assert rc == 0
    text = readme.read_text()
    assert text.startswith(README_BEFORE + wrd.BEGIN) and text.endswith(wrd.END + README_AFTER)
    block = _block(text)
    assert "old numbers" not in block
    assert "generated by `make docs`" in block  # the block says it is generated
    assert "**toy** tier run of commit `abcdef1`, 2031-02-03 04:05 UTC" in block
    assert "on Fixture CPU 9000, 7 cores, torch CPU capability AVX512" in block
    # the three verdicts per paper (the empty verdict counts as not measured) and the rule
    assert ("CCA (Chen et al., ICLR 2025): 1 hold, 1 do not hold, 1 inconclusive (of 3 measured); "
            "Autoguidance (Karras et al., NeurIPS 2024): 1 hold, 0 do not hold, 0 inconclusive "
            "(of 1 measured), 1 not measured; STAR (Ma et al., 2024): 0 hold, 1 do not hold, "
            "0 inconclusive (of 1 measured); **all: 2 hold, 2 do not hold, 1 inconclusive "
            "(of 5 measured), 1 not measured**.") in block
    assert "holds if mean(e) > t SE; does not hold if mean(e) < -t SE" in block
    # the matrix: FID / recall (point), — where the family has no such point
    assert "| family (model) | guidance-free | CFG | CCA |" in block
    assert "| llamagen (S) | 123.5 / 0.042 | 87.2 / 0.22 (cfg = 3) | 94.2 / 0.3 (β = 49, λ = 10) |" in block
    assert "| fmnist (main) | 148.0 / 0.32 | 70.0 / 0.56 (w = 2) | — |" in block
    shown = [name for _, name, _, in_readme in wrd.FIGURES if in_readme]
    assert re.findall(r"\]\(docs/figures/([^)]+)\)", block) == shown


def test_results_doc_and_figures(results, readme):
    rc, doc, figs = _run(results, readme)
    assert rc == 0
    text = doc.read_text()
    for fact in ("| tier | toy |", f"| git commit | `{_record({})['git_commit']}` |",
                 "| working tree dirty | no |", "| run record written | 2031-02-03 04:05 UTC |", "| CPU | Fixture CPU 9000 |", "| cores | 7 |",
                 "| memory | 3.5 GiB |",
                 "## Claims against the papers", "fixture claims table 4242.42",
                 "### CCA (Chen et al., ICLR 2025)", "fixture matrix 777.7"):
        assert fact in text, fact
    for src, name, _, _ in wrd.FIGURES:
        assert (figs / name).read_bytes() == (results / src).read_bytes()
        assert f"](figures/{name})" in text


@pytest.mark.parametrize("hardware, shown", [
    ({"processor": "x86 fixture processor", "platform": "Linux-p", "cpu_count": 2},
     "on x86 fixture processor, 2 cores."),
    ({"processor": "", "platform": "Linux-only-platform", "cpu_count": 2},
     "on a CPU whose model was not recorded (platform Linux-only-platform), 2 cores."),
])
def test_cpu_model_falls_back_to_platform_strings(results, readme, hardware, shown):
    (results / "run_record.json").write_text(json.dumps(_record(hardware)))
    assert _run(results, readme)[0] == 0
    assert shown in _block(readme.read_text())


@pytest.mark.parametrize("missing", ["claims.csv", "matrix.md", "run_record.json",
                                     wrd.FIGURES[-1][0]])
def test_missing_results_file_is_named_and_nothing_is_written(results, readme, missing, capsys):
    (results / missing).unlink()
    before = readme.read_text()
    rc, doc, figs = _run(results, readme)
    assert rc == 2
    assert str(results / missing) in capsys.readouterr().err
    assert readme.read_text() == before and not doc.exists() and not figs.exists()


def test_readme_without_one_marker_pair_is_refused(results, readme, capsys):
    readme.write_text(readme.read_text() + f"\n{wrd.BEGIN}\n{wrd.END}\n")
    assert _run(results, readme)[0] == 2
    assert "exactly one" in capsys.readouterr().err


def test_bad_verdict_names_the_claims_file(results, readme, capsys):
    _write_csv(results / "claims.csv", ["paper", "experiment", "model", "claim", "verdict"],
               [("cca", "cca-var", "", "c", "maybe")])
    assert _run(results, readme)[0] == 2
    assert f"{results / 'claims.csv'}: line 2" in capsys.readouterr().err


def test_non_numeric_matrix_value_names_the_matrix_file(results, readme, capsys):
    text = (results / "matrix.csv").read_text().replace("87.21", "eighty-seven")
    (results / "matrix.csv").write_text(text)
    assert _run(results, readme)[0] == 2
    assert f"{results / 'matrix.csv'}: line 3: fid / recall must be numbers" in capsys.readouterr().err


# --- the committed README and docs -------------------------------------------------------------

def test_committed_readme_has_one_marker_pair_and_the_quick_start():
    text = (ROOT / "README.md").read_text()
    assert text.count(wrd.BEGIN) == 1 and text.count(wrd.END) == 1
    assert text.index(wrd.BEGIN) < text.index(wrd.END)
    # The first fenced block under a "Quick start" heading, as ../shared/tools/fresh-clone-check
    # reads it: make reproduce first, make test second.
    after = re.split(r"^#+ .*quick ?start.*$", text, maxsplit=1, flags=re.I | re.M)[1]
    block = after.split("```", 2)[1].split("\n", 1)[1]
    assert block.splitlines() == [
        "make reproduce    # the default (toy) tier: snakemake --cores all, then the HTML report",
        "make test         # the test suite, including one smoke run of the whole DAG",
    ]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                        for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_point_at_files(doc):
    path = ROOT / doc
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        file, _, anchor = target.partition("#")
        dest = (path.parent / file) if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            broken.append(target)
    assert not broken, f"{doc}: broken relative links {broken}"
