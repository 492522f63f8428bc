"""tools/job_times.py on constructed Snakemake logs: job durations, slices, and which log it reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import job_times  # noqa: E402


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
    log = tmp_path / "run.snakemake.log"
    log.write_text(RUN_LOG)
    s = job_times.summarise(job_times.parse(log))
    assert s["jobs"] == 2
    assert s["job_minutes"] == pytest.approx((120 + 150) / 60)
    assert s["wall_minutes"] == pytest.approx(150 / 60)
    assert s["by_slice"]["cca_llamagen"]["job_minutes"] == pytest.approx(2.0)
    assert s["by_rule"]["star_tokenizer"]["jobs"] == 1


def test_default_passes_over_the_report_steps_log(tmp_path, monkeypatch, capsys):
    """`make reproduce` leaves the DAG's log and, newer, its report step's log without jobs."""
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-04T013053.923400.snakemake.log").write_text(RUN_LOG)
    (logs / "2026-12-04T020250.673887.snakemake.log").write_text(REPORT_LOG)
    monkeypatch.chdir(tmp_path)
    assert job_times.main([]) == 0
    out = capsys.readouterr().out
    assert "2026-12-04T013053" in out and "2 jobs" in out


def test_no_log_with_jobs_is_an_error(tmp_path, monkeypatch, capsys):
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-04T020250.673887.snakemake.log").write_text(REPORT_LOG)
    monkeypatch.chdir(tmp_path)
    assert job_times.main([]) == 2
    assert "with finished jobs" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no finished jobs"):
        job_times.parse(logs / "2026-12-04T020250.673887.snakemake.log")
