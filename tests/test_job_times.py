"""tools/job_times.py on constructed Snakemake logs: job durations, slices, and which log it reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("job_times", ROOT / "tools" / "job_times.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RUN_LOG = """Building DAG of jobs...
Execute 2 jobs...
[Fri Dec  4 01:30:55 2026]
localrule cca_llamagen_pretrain:
    output: results/cca_llamagen/models/S-pretrained-r1.pt
    jobid: 7
    wildcards: model=S, rep=-r1
[Fri Dec  4 01:30:55 2026]
rule star_tokenizer:
    output: results/star/tokenizer.pt
    jobid: 9
[Fri Dec  4 01:32:55 2026]
Finished jobid: 7 (Rule: cca_llamagen_pretrain)
[Fri Dec  4 01:33:25 2026]
Finished job 9.
"""

REPORT_LOG = """Building DAG of jobs...
Creating report...
Report created.
"""


def test_durations_and_slices_from_a_log(tmp_path):
    tool = load_tool()
    log = tmp_path / "run.snakemake.log"
    log.write_text(RUN_LOG)
    s = tool.summarise(tool.parse(log))
    assert s["jobs"] == 2
    assert s["job_minutes"] == pytest.approx((120 + 150) / 60)
    assert s["wall_minutes"] == pytest.approx(150 / 60)
    assert s["by_slice"]["cca_llamagen"]["job_minutes"] == pytest.approx(2.0)
    assert s["by_rule"]["star_tokenizer"]["jobs"] == 1


def test_default_passes_over_the_report_steps_log(tmp_path, monkeypatch, capsys):
    """`make reproduce` leaves the DAG's log and, newer, its report step's log without jobs."""
    tool = load_tool()
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-04T013053.923400.snakemake.log").write_text(RUN_LOG)
    (logs / "2026-12-04T020250.673887.snakemake.log").write_text(REPORT_LOG)
    monkeypatch.chdir(tmp_path)
    assert tool.main([]) == 0
    out = capsys.readouterr().out
    assert "2026-12-04T013053" in out and "2 jobs" in out


def test_no_log_with_jobs_is_an_error(tmp_path, monkeypatch, capsys):
    tool = load_tool()
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-04T020250.673887.snakemake.log").write_text(REPORT_LOG)
    monkeypatch.chdir(tmp_path)
    assert tool.main([]) == 2
    assert "with finished jobs" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no finished jobs"):
        tool.parse(logs / "2026-12-04T020250.673887.snakemake.log")
