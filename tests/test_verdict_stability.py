"""tools/verdict_stability.py (issue 23's acceptance table) on two constructed runs' claims."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("verdict_stability", ROOT / "tools" / "verdict_stability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _claims(results: Path, rows):
    results.mkdir(parents=True)
    with open(results / "claims.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["experiment", "model", "claim", "measured", "verdict"])
        w.writeheader()
        w.writerows(dict(zip(["experiment", "model", "claim", "measured", "verdict"], r)) for r in rows)


def test_side_by_side_counts_agreement_and_flags_flips(tmp_path):
    tool = load_tool()
    _claims(tmp_path / "k0", [("cca-llamagen", "S", "lowers", "a 1 | b 2", "holds"),
                              ("cca-var", "d4", "matches", "x", "inconclusive"),
                              ("star-cfg", "", "clip", "y", "does not hold")])
    _claims(tmp_path / "k1", [("cca-llamagen", "S", "lowers", "a 1", "holds"),
                              ("cca-var", "d4", "matches", "x", "holds"),
                              ("star-cfg", "", "clip", "y", "does not hold")])
    runs = [{"shift": 0, "results": str(tmp_path / "k0")}, {"shift": 1, "results": str(tmp_path / "k1")}]
    cmp = tool.compare(runs)
    assert (cmp["agree"], cmp["claims"]) == (2, 3)
    assert [r["agree"] for r in cmp["rows"]] == [True, False, True]
    md = tool.markdown(runs, cmp, {"date": "d", "code": {"git_commit": "abcdef123"}})
    assert "**2 of 3 claims have the same verdict in every run.**" in md
    assert "| cca-var | d4 | matches | x | inconclusive | x | holds | **no** |" in md
    assert "a 1 / b 2" in md  # a pipe inside a cell cannot break the table


def test_a_claim_missing_from_one_run_does_not_agree(tmp_path):
    tool = load_tool()
    _claims(tmp_path / "k0", [("cca-var", "d4", "matches", "x", "holds")])
    _claims(tmp_path / "k1", [("cca-var", "d5", "matches", "x", "holds")])
    cmp = tool.compare([{"shift": 0, "results": str(tmp_path / "k0")},
                        {"shift": 1, "results": str(tmp_path / "k1")}])
    assert cmp["agree"] == 0 and cmp["rows"][0]["verdicts"] == ["holds", "missing"]


def test_bad_inputs_name_what_is_wrong(tmp_path):
    tool = load_tool()
    with pytest.raises(SystemExit, match="claims.csv: missing"):
        tool.read_verdicts(tmp_path / "nowhere")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "claims.csv").write_text("experiment,model,claim,holds\ncca-var,d4,x,true\n")
    with pytest.raises(SystemExit, match="no claims with a 'verdict' column"):
        tool.read_verdicts(tmp_path / "old")
    with pytest.raises(SystemExit, match="expected K=RESULTS_DIR"):
        tool.parse_given(["results"])
    assert tool.parse_given(["0=/a/results"]) == {0: Path("/a/results")}


def _log(path: Path, events: list[tuple[str, str, str]]):
    """A Snakemake log of ("start" | "end", rule, time) events in time order, as Snakemake writes them."""
    ids, lines = {}, []
    for kind, rule, time in events:
        lines.append(f"[Wed Dec  2 {time} 2026]")
        if kind == "start":
            ids[rule] = len(ids)
            lines += [f"rule {rule}:", f"    jobid: {ids[rule]}"]
        else:
            lines.append(f"Finished jobid: {ids[rule]} (Rule: {rule})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_a_given_run_takes_its_timing_from_the_largest_log_beside_its_results(tmp_path):
    tool = load_tool()
    logs = tmp_path / "clone" / ".snakemake" / "log"
    _log(logs / "2026-12-02T100000.snakemake.log",
         [("start", "cca_llamagen_pretrain", "10:00:00"), ("start", "star_pretrain", "10:00:00"),
          ("end", "star_pretrain", "10:10:00"), ("end", "cca_llamagen_pretrain", "10:20:00")])
    _log(logs / "2026-12-02T110000.snakemake.log",  # a later, shorter log: the report step
         [("start", "report", "11:00:00"), ("end", "report", "11:00:30")])
    (logs / "2026-12-02T120000.snakemake.log").write_text("Building DAG of jobs...\n")  # aborted: no jobs
    run = tool.given_run(0, tmp_path / "clone" / "results")
    assert run["wall_minutes"] == pytest.approx(20.0) and run["job_minutes"] == pytest.approx(30.0)
    bare = tool.given_run(1, tmp_path / "elsewhere" / "results")
    assert bare["wall_minutes"] is None and bare["job_minutes"] is None


def test_a_recorded_run_sits_beside_a_new_run_of_the_same_shift(tmp_path):
    # the same shift on two machines: the earlier one only in a report's JSON (its results/ gone)
    import json
    tool = load_tool()
    old = {"runs": [{"shift": 0, "results": "/gone/results", "wall_minutes": 29.4, "job_minutes": 57.5},
                    {"shift": 1, "results": "/gone/k1"}],
           "rows": [{"experiment": "cca-var", "model": "d4", "claim": "matches", "verdicts": ["holds", "inconclusive"],
                     "measured": ["x0", "x1"]},
                    {"experiment": "toy", "model": "", "claim": "branches", "verdicts": ["missing", "holds"],
                     "measured": ["", "y1"]}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    rec = tool.recorded_run(f"{tmp_path / 'old.json'}:0=Intel Xeon, AMX")
    assert rec["cpu"] == "Intel Xeon, AMX"
    assert rec["claims"] == {("cca-var", "d4", "matches"): {"verdict": "holds", "measured": "x0"}}
    _claims(tmp_path / "amd", [("cca-var", "d4", "matches", "z", "holds"), ("toy", "", "branches", "w", "holds")])
    (tmp_path / "amd" / "run_record.json").write_text(json.dumps(
        {"hardware": {"cpu": {"model": "AMD EPYC", "flags": {"amx_tile": False}}}}))
    new = tool.given_run(0, tmp_path / "amd")
    assert new["cpu"] == "AMD EPYC, no AMX"
    rec["index"] = 2
    cmp = tool.compare([new, rec])
    assert (cmp["agree"], cmp["claims"]) == (1, 2)
    assert cmp["rows"][1]["verdicts"] == ["holds", "missing"]
    md = tool.markdown([new, rec], cmp, {"date": "d", "code": {}, "title": "Two machines"})
    assert md.startswith("# Two machines") and "K = 0 (run 2): verdict" in md
    assert "(recorded in `" in md and "| AMD EPYC, no AMX |" in md and "| Intel Xeon, AMX |" in md
    with pytest.raises(SystemExit, match="expected JSON:INDEX"):
        tool.recorded_run(str(tmp_path / "old.json"))
    with pytest.raises(SystemExit, match="not a run of a verdict-stability JSON"):
        tool.recorded_run(f"{tmp_path / 'old.json'}:5")
