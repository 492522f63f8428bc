"""The suite is hermetic (issue 25): its DAG tests pass, and change nothing, in a checkout that holds
a finished run.

A copy of the repository (its git files, so the real checkout is never touched) is made to look like
a clone after `make reproduce`: every output of the default config present and up to date (created
empty, then `snakemake --touch --forceall`), a Snakemake lock left in .snakemake/locks, a DVC cache,
and the DVC remote beside the clone. The suite's fast `dag` tests then run in that copy as a user runs them there
(pytest with the copy as rootdir). They must pass and leave the copy and the remote as they were:
every file with the same name, size, content and mtime, and no file or folder added or removed.
And `run_snakemake` refuses a working directory inside the checkout.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, copy_worktree, run_snakemake, venv_env

# Written wherever Python or pytest runs (bytecode, pytest's cache, pytest-benchmark's empty storage
# folder), whichever tests run: not what this check is about.
TOOL_FOLDERS = {"__pycache__", ".pytest_cache", ".benchmarks"}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _snakemake(checkout: Path, env: dict[str, str], *args: str) -> str:
    """`snakemake --cores 1 ARGS` in `checkout`, as a user (or the Makefile) runs it there."""
    return _run([PYTHON, "-m", "snakemake", "--cores", "1", *args], checkout, env)


def finish_default_run(checkout: Path, env: dict[str, str]) -> list[str]:
    """Make `checkout` look like a clone after `make reproduce`: every output of the default
    config's DAG present and recorded as up to date. Returns the outputs (relative paths)."""
    table = _snakemake(checkout, env, "--summary").splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("output_file\t"))
    outputs = [line.split("\t")[0] for line in table[header + 1:] if "\t" in line]
    assert "results/data/fashion_mnist.npz" in outputs, table[:20]
    for rel in outputs:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).touch()
    # --touch marks existing files up to date in DAG order (Snakemake 9 does not create missing
    # ones); --forceall makes it go through every job, so each output gets its metadata record as
    # after a real run (without, jobs already newer than their inputs keep none, and `-n` then
    # names their rules in its "missing metadata" note).
    _snakemake(checkout, env, "--touch", "--forceall")
    plan = _snakemake(checkout, env, "-n")
    assert "Nothing to be done" in plan and "missing provenance/metadata" not in plan, plan[-3000:]
    return outputs


def leave_a_lock(checkout: Path, outputs: list[str]) -> None:
    """The lock files of a Snakemake run that still holds the outputs (one killed, or running)."""
    locks = checkout / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.output.lock").write_text("".join(f"{checkout / rel}\n" for rel in outputs))
    (locks / "0.input.lock").write_text(f"{checkout / 'config' / 'config.yaml'}\n")


def dvc_remote(checkout: Path) -> Path:
    """The folder of the DVC remote that .dvc/config names (a relative url is from .dvc/)."""
    url = re.search(r"^\s*url\s*=\s*(\S+)\s*$", (checkout / ".dvc" / "config").read_text(), re.M)
    assert url, "no remote url in .dvc/config"
    return (checkout / ".dvc" / url.group(1)).resolve()


def fill_dvc_stores(checkout: Path, remote: Path) -> None:
    """One object in the DVC cache and one in the remote, at the paths DVC 3 uses."""
    for store in (checkout / ".dvc" / "cache", remote):
        obj = store / "files" / "md5" / "d4" / "1d8cd98f00b204e9800998ecf8427e"
        obj.parent.mkdir(parents=True)
        obj.write_bytes(b"")


def snapshot(top: Path) -> dict[str, tuple]:
    """Every file and folder under `top`: size, mtime and sha256 of each file."""
    state: dict[str, tuple] = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top)
        if TOOL_FOLDERS.intersection(rel.parts):
            continue
        if path.is_symlink():
            state[str(rel)] = ("link", os.readlink(path))
        elif path.is_dir():
            state[str(rel)] = ("folder",)
        else:
            st = path.stat()
            state[str(rel)] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def differences(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return ([f"added {p}" for p in sorted(after.keys() - before.keys())]
            + [f"removed {p}" for p in sorted(before.keys() - after.keys())]
            + [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]])


def fast_dag_tests(checkout: Path, env: dict[str, str]) -> list[str]:
    """The ids of the copy's fast `dag` tests, one case of each parametrized test: its cases differ
    in config values, not in where they plan or what they write (and each costs a Snakemake start)."""
    # Only modules that apply the marker are collected (collecting all of tests/ imports every model).
    modules = [str(p.relative_to(checkout)) for p in sorted((checkout / "tests").glob("test_*.py"))
               if "pytest.mark.dag" in p.read_text()]
    listing = _run([PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                    "-m", "dag and not slow", *modules], checkout, env)
    first_case: dict[str, str] = {}
    for line in listing.splitlines():
        if line.startswith("tests/") and "::" in line:
            first_case.setdefault(line.split("[")[0], line.strip())
    assert first_case, listing[-3000:]
    return list(first_case.values())


@pytest.mark.slow
def test_dag_tests_pass_and_touch_nothing_in_a_checkout_after_make_reproduce(tmp_path, fmnist_dir):
    start = time.time()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    copy_worktree(checkout)
    # The copy's own package and nothing written into it (the suite imports guidance_repro).
    env = dict(venv_env(), PYTHONPATH=os.pathsep.join(filter(None, [str(checkout / "src"),
                                                                     os.environ.get("PYTHONPATH")])),
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    outputs = finish_default_run(checkout, env)
    leave_a_lock(checkout, outputs)
    remote = dvc_remote(checkout)
    assert remote.is_relative_to(tmp_path), remote  # beside the copy, not the real checkout's remote
    fill_dvc_stores(checkout, remote)
    built = time.time()
    tests = fast_dag_tests(checkout, env)
    collected = time.time()
    before = {"checkout": snapshot(checkout), "remote": snapshot(remote)}
    assert set(outputs) <= before["checkout"].keys()

    inner = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(checkout),
                            "--basetemp", str(tmp_path / "basetemp"), *tests],
                           cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
    print(f"after-reproduce copy: {built - start:.0f} s, collecting: {collected - built:.0f} s, "
          f"{len(tests)} fast DAG tests: {time.time() - collected:.0f} s")
    after = {"checkout": snapshot(checkout), "remote": snapshot(remote)}

    # Both verdicts in one message: a test that plans against the copy often also writes into it.
    problems = [f"the tests changed the {name}: " + "; ".join(changed[:20])
                for name in before if (changed := differences(before[name], after[name]))]
    passed = inner.returncode == 0 and re.search(rf"\b{len(tests)} passed\b", inner.stdout)  # none skipped
    if not passed:
        problems.append("the DAG tests did not all pass in the copy:\n" + (inner.stdout + inner.stderr)[-6000:])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("inside", [".", ".test", "results"])
def test_run_snakemake_refuses_the_checkout(inside):
    with pytest.raises(ValueError, match="is inside the checkout"):
        run_snakemake(ROOT / inside, "-n")
