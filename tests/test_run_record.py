"""The run record names what makes float results differ between machines: the CPU (model, torch's
kernel capability, instruction-set flags) and the thread count of every rule's jobs."""

from __future__ import annotations

import json
import subprocess

import torch
import yaml
from conftest import ROOT, run_snakemake

from guidance_repro.report.run_record import CPU_FLAGS, cpu, record, threads_by_rule

# Two processors of a Sapphire Rapids machine, as /proc/cpuinfo lists them (flags shortened).
XEON = "".join(f"""processor\t: {i}
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

""" for i in range(2))
# An aarch64 machine: no "model name", and "Features" instead of "flags".
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\nCPU part\t: 0xd0c\n"


def test_cpu_from_a_cpuinfo_text():
    info = cpu(XEON)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["flags"] == {f: True for f in CPU_FLAGS}
    amd = cpu(XEON.replace("Intel(R) Xeon(R) Platinum 8480+", "AMD EPYC 7763").replace(
        " avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8", ""))
    assert amd["model"] == "AMD EPYC 7763"
    assert amd["flags"] == {"avx2": True, **{f: False for f in CPU_FLAGS if f != "avx2"}}
    assert info["capability"] == torch.backends.cpu.get_cpu_capability()


def test_cpu_without_model_or_flags_lines_says_unknown():
    info = cpu(ARM)
    assert info["flags"] == {f: None for f in CPU_FLAGS}  # unknown, not absent
    assert isinstance(info["model"], str) and info["model"]  # the platform's name instead
    assert cpu("")["flags"] == {f: None for f in CPU_FLAGS}


def test_threads_by_rule():
    jobs = [("train", 1), ("bench", 2), ("train", 1), ("sample", 1), ("sample", 2)]
    assert threads_by_rule(jobs) == {"bench": 2, "sample": [1, 2], "train": 1}


def test_record_keys():
    rec = record({"tier": "smoke"}, rule_threads={"train": 1})
    assert set(rec["hardware"]["cpu"]) == {"model", "capability", "flags"}
    assert set(rec["hardware"]["cpu"]["flags"]) == set(CPU_FLAGS)
    assert rec["threads"] == {"rules": {"train": 1}, "torch_intra_op": torch.get_num_threads()}
    assert record({})["threads"]["rules"] is None  # outside a Snakemake run


def test_a_real_run_records_cpu_and_threads(tmp_path):
    """One cheap job of the real DAG: the record Snakemake's onsuccess writes (common.smk) holds
    the CPU facts and the threads of the rule that ran."""
    cfg = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "results/data/tree_gaussians.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((tmp_path / "results" / "run_record.json").read_text())
    assert rec["threads"]["rules"] == {"tree_gaussians": 1}
    assert rec["threads"]["torch_intra_op"] >= 1
    cpu_info = rec["hardware"]["cpu"]
    assert cpu_info["model"] and cpu_info["capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(cpu_info["flags"]) == set(CPU_FLAGS)
    assert all(v in (True, False, None) for v in cpu_info["flags"].values())
    # the commit is the checkout's that ran (the Snakefile's folder), not the --directory's
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert rec["git_commit"] == head.stdout.strip() and isinstance(rec["git_dirty"], bool)
