"""The reviewers' report: the claims table across papers and the cross-method matrix, on small
synthetic slice files (normalised columns, a missing slice, bad files naming themselves)."""

from __future__ import annotations

import csv
import math

import pytest

from guidance_repro.cli import main
from guidance_repro.errors import ReproError
from guidance_repro.report import claims, matrix


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def slices(tmp_path):
    cca = tmp_path / "cca.csv"
    claims.write_slice_csv([
        {"experiment": "cca-llamagen", "model": "S", "claim": "CCA lowers the guidance-free FID",
         "test": "min FID(CCA) < FID(none)", "measured": "150 vs 160; R = 3", "replicates": 3,
         "floor": "tokenizer FID 50", "verdict": "holds"},
        {"experiment": "cca-llamagen", "model": "S",
         "claim": "guidance-free CCA matches the best CFG FID", "measured": "150 vs 140",
         "verdict": "inconclusive"},
    ], cca)
    # an older layout: no measured/model columns, 'rule' instead of 'test', holds spelled yes/no
    toy = _write(tmp_path / "toy.csv", ["experiment", "claim", "rule", "holds"],
                 [["autoguidance-toy2d", "autoguidance cuts outliers vs unguided", "o(AG) < o(U)", "yes"],
                  ["autoguidance-toy2d", "a claim no paper figure is recorded for", "x", ""]])
    return cca, toy


def test_claims_join_paper_figures_and_normalise_columns(slices, tmp_path):
    rows = claims.aggregate(list(slices), "toy")
    assert [r["verdict"] for r in rows] == ["holds", "inconclusive", "holds", ""]
    first = rows[0]
    assert first["paper"] == "cca" and first["measured"] == "150 vs 160; R = 3"
    assert (first["replicates"], first["floor"]) == ("3", "tokenizer FID 50")
    assert "19.07" in first["paper_figure"] and first["paper_source"] == "cca.md §2.1 (Fig. 1)"
    assert first["comparison"].startswith("direction only")
    toy = rows[2]
    assert toy["test"] == "o(AG) < o(U)" and toy["model"] == "" and "§4" in toy["paper_source"]
    assert rows[3]["comparison"] == "no paper figure recorded for this claim"
    assert claims.aggregate(list(slices), "paper")[0]["comparison"].startswith("values comparable")


def test_claims_outputs_and_a_missing_slice(slices, tmp_path):
    out = {k: tmp_path / f"claims.{k}" for k in ("csv", "md", "html")}
    assert main(["claims", "--tier", "toy", "--slice", *map(str, slices), "--out-csv", str(out["csv"]),
                 "--out-md", str(out["md"]), "--out-html", str(out["html"])]) == 0
    md = out["md"].read_text()
    assert "2 hold, 0 do not hold, 1 inconclusive (of 3 measured)" in md
    assert "| tokenizer FID 50 |" in md and "mean(e) > t SE" in md
    # STAR wrote no slice file: its section says so instead of vanishing
    star = md.split("## STAR")[1]
    assert "Not in this run" in star
    with open(out["csv"], newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [g["verdict"] for g in got] == ["holds", "inconclusive", "holds", ""]
    assert set(claims.COLUMNS) == set(got[0])
    assert "<table>" in out["html"].read_text() and "inconclusive" in out["html"].read_text()


def test_bad_slice_files_name_themselves(tmp_path, slices):
    no_holds = _write(tmp_path / "no_holds.csv", ["experiment", "claim"], [["cca-var", "x"]])
    with pytest.raises(ReproError, match="no_holds.csv.*verdict"):
        claims.aggregate([slices[0], no_holds], "toy")
    bad_value = _write(tmp_path / "bad_value.csv", ["experiment", "claim", "holds"], [["cca-var", "x", "maybe"]])
    with pytest.raises(ReproError, match="bad_value.csv: line 2"):
        claims.aggregate([bad_value], "toy")
    with pytest.raises(ReproError, match="absent.csv"):
        claims.aggregate([tmp_path / "absent.csv"], "toy")
    # the CLI turns it into `error: ...` and exit status 2
    assert main(["claims", "--tier", "toy", "--slice", str(bad_value), "--out-csv", str(tmp_path / "c"),
                 "--out-md", str(tmp_path / "m"), "--out-html", str(tmp_path / "h")]) == 2
    assert not (tmp_path / "m").exists()


AR_HEADER = ["family", "model", "method", "cfg", "beta", "lam", "fid", "is_mean", "is_std", "precision",
             "recall", "num_samples", "seconds_per_image"]


def test_matrix_picks_each_methods_best_point(tmp_path):
    ar = _write(tmp_path / "table.csv", AR_HEADER, [
        ["llamagen", "S", "pretrained", 1, "", "", 160, 5, 0, 0.7, 0.30, 100, 0.010],
        ["llamagen", "S", "cfg", 2, "", "", 140, 6, 0, 0.7, 0.25, 100, 0.021],
        ["llamagen", "S", "cfg", 3, "", "", 145, 6, 0, 0.7, 0.22, 100, 0.020],
        ["llamagen", "S", "autoguidance", 1.5, "", "", 150, 6, 0, 0.7, 0.28, 100, 0.015],
        ["llamagen", "S", "cca", 1, 49, 10, 152, 6, 0, 0.7, 0.29, 100, 0.011],
        ["llamagen", "S", "cca", 1, 49, 30, 149, 6, 0, 0.7, 0.27, 100, 0.009],
        ["llamagen", "M", "pretrained", 1, "", "", 10, 5, 0, 0.7, 0.30, 100, 0.010],  # other model
        ["llamagen", "S", "dpo", 1, 49, 10, 190, 5, 0, 0.7, 0.1, 100, 0.010],        # not a matrix method
    ])
    diff = _write(tmp_path / "points.csv", ["method", "guide", "w", "fid", "precision", "recall",
                                            "num_samples", "seconds_per_image"], [
        ["none", "", 1, 80, 0.6, 0.5, 100, 0.05],
        ["cfg", "uncond", 2, 40, 0.6, 0.6, 100, 0.10],
        ["autoguidance", "autoguide", 2, 45, 0.5, 0.7, 100, 0.08],
        ["autoguidance", "smaller", 2, 30, 0.5, 0.7, 100, 0.08],  # another guide: not this row
    ])
    rows = matrix.ar_family(ar, "llamagen", "S") + matrix.diffusion_family(diff, "fmnist")
    get = {(r["family"], r["method"]): r for r in rows}
    assert get[("llamagen", "CFG")]["fid"] == 140 and get[("llamagen", "CFG")]["point"] == "cfg = 2"
    assert get[("llamagen", "CCA")]["point"] == "β = 49, λ = 30"
    assert get[("llamagen", "autoguidance")]["point"] == "w = 1.5"
    assert get[("llamagen", "CFG")]["relative_cost"] == pytest.approx(0.021 / 0.010)
    assert math.isnan(get[("llamagen", "CCA+CFG")]["fid"])
    assert "not sampled" in get[("llamagen", "CCA+CFG")]["note"]
    assert get[("fmnist", "autoguidance")]["fid"] == 45 and get[("fmnist", "CFG")]["passes"] == 2
    assert get[("fmnist", "CCA")]["note"].startswith("n/a")
    out = {k: tmp_path / f"m.{k}" for k in ("csv", "md", "png", "html")}
    assert main(["matrix", "--ar", f"llamagen:S={ar}", "--diffusion", f"fmnist={diff}",
                 "--na", "llamagen:CCA+CFG=n/a: off in this test", "--out-csv", str(out["csv"]),
                 "--out-md", str(out["md"]), "--out-figure", str(out["png"]),
                 "--out-html", str(out["html"])]) == 0
    assert "n/a: off in this test" in out["md"].read_text()
    assert out["png"].stat().st_size > 0 and len(out["csv"].read_text().splitlines()) == 11


def test_matrix_errors_name_the_file_or_option(tmp_path):
    bad = _write(tmp_path / "bad_table.csv", ["model", "method"], [["S", "cfg"]])
    with pytest.raises(ReproError, match="bad_table.csv: missing columns"):
        matrix.ar_family(bad, "llamagen", "S")
    ok = _write(tmp_path / "t.csv", AR_HEADER, [["var", "d4", "pretrained", 1, "", "", 5, 1, 0, 1, 1, 1, 1]])
    with pytest.raises(ReproError, match="no rows of model 'd9'"):
        matrix.ar_family(ok, "var", "d9")
    assert main(["matrix", "--na", "var:bogus=x", "--out-csv", "a", "--out-md", "b", "--out-figure", "c"]) == 2


def test_star_layout_is_normalised(tmp_path):
    star = _write(tmp_path / "star.csv", ["experiment", "claim", "test", "reproduced", "paper", "holds"],
                  [["star-cfg", "CFG improves the CLIP score", "c > n", "0.30 vs 0.25", "CLIP 0.291", "True"]])
    (row,) = claims.aggregate([star], "toy")
    assert (row["paper"], row["measured"], row["paper_figure"], row["verdict"]) == \
        ("star", "0.30 vs 0.25", "CLIP 0.291", "holds")
