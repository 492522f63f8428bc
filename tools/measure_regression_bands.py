#!/usr/bin/env python
"""Measure the regression bands of the smoke tier: run the smoke DAG once per seed, then write
tests/regression/expected.json with `guidance-repro regression-bands`.

Seed K runs the smoke config with EVERY run-time seed shifted by K: the top-level `seed`, the
`evaluation.seed` (sampling, reference subsets), each trainer's `train.seed` (initial weights,
data order) and the sampler seeds of the autoguidance experiments (`autoguidance.toy.seed`,
`autoguidance.image.seed`). Only the top-level `seed` would not do: the rules take their seeds
from these keys, not from it. The seeds under `data` are left alone: they define the datasets (the
compositions, the tree of Gaussians), i.e. the task, not the run. Seed 0 is the committed smoke
config unchanged, i.e. the run CI repeats.

    .venv/bin/python tools/measure_regression_bands.py --seeds 4          # ~3 min per seed, quiet
    .venv/bin/python tools/measure_regression_bands.py --seeds 4 --workroot /tmp/bands --reuse
    .venv/bin/python tools/measure_regression_bands.py --targets star_all --merge-prefix star/

The last form re-measures one slice and replaces only its bands in the file (recorded under
`made.additions`); the seed count must be the file's.

The runs go one after the other with `--cores 2`, niced (the machine is shared). They all run
one snapshot of the code (Snakefile, workflow/, src/, benchmarks/, .test/config copied into
WORKROOT/code, put first on PYTHONPATH), so that edits made to the checkout meanwhile cannot mix
two versions in one band. `--targets` limits the runs to some slices (default: the whole DAG,
like the smoke test).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from snakemake.utils import validate

from guidance_repro.io import write_json

ROOT = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = ROOT / ".test" / "config" / "config.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SNAPSHOT = ("Snakefile", "workflow", "src", "benchmarks", ".test/config")


def snapshot(code: Path) -> dict:
    """Copy the code the DAG runs into `code` (once); its git state then and a hash of the files."""
    if not code.exists():
        for rel in SNAPSHOT:
            src, dst = ROOT / rel, code / rel
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        state = {"snapshot_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "git_commit": git("rev-parse", "HEAD"),
                 "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
        (code / "snapshot.json").write_text(json.dumps(state))
    h = hashlib.sha256()
    for f in sorted(p for p in code.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                    and p.name != "snapshot.json"):
        h.update(f.relative_to(code).as_posix().encode() + b"\0" + f.read_bytes())
    return {**json.loads((code / "snapshot.json").read_text()), "code_sha256": h.hexdigest()}


def seed_paths(cfg: dict, schema: Path = SCHEMA) -> list[tuple[str, ...]]:
    """Paths of every `seed` key (schema defaults included) whose parent section the config
    writes, outside `data`. Only existing sections: adding one could switch an experiment on."""
    full = copy.deepcopy(cfg)
    validate(full, str(schema))  # fills the schema defaults
    found = []

    def walk(node, written, path):
        if not isinstance(node, dict) or not isinstance(written, dict):
            return
        for key, value in node.items():
            if key == "seed" and isinstance(value, int) and path[:1] != ("data",):
                found.append(path + (key,))
            elif key in written:
                walk(value, written[key], path + (key,))

    walk(full, cfg, ())
    return found


def seed_variant(cfg: dict, k: int, schema: Path = SCHEMA) -> tuple[dict, dict]:
    """The config with each run-time seed shifted by k, and {dotted path: new seed}."""
    full = copy.deepcopy(cfg)
    validate(full, str(schema))
    out, shifted = copy.deepcopy(cfg), {}
    for path in seed_paths(cfg, schema):
        base = full
        for key in path:
            base = base[key]
        node = out
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = base + k
        shifted[".".join(path)] = base + k
    return out, shifted


def snakemake(code: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    # As tests/test_dag_smoke.py runs it (Snakemake sets OMP_NUM_THREADS per job from its threads),
    # with the snapshot's package first on the path of every job.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([str(code / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(code / "Snakefile"),
           "--directory", str(workdir), *extra]
    return subprocess.run(cmd, cwd=code, capture_output=True, text=True, env=env)


def run_seed(code: Path, workdir: Path, k: int, cores: int, reuse: bool, targets: list[str]) -> dict:
    smoke_config = code / ".test" / "config" / "config.yaml"
    cfg = yaml.safe_load(smoke_config.read_text())
    variant, shifted = seed_variant(cfg, k, code / "workflow" / "schemas" / "config.schema.yaml")
    if not reuse and workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    for f in smoke_config.parent.iterdir():
        if f.is_file() and f.name != "config.yaml":
            shutil.copy2(f, workdir / "config" / f.name)
    if k == 0:
        shutil.copy2(smoke_config, workdir / "config" / "config.yaml")
    else:
        text = f"# smoke config, every run-time seed shifted by {k} (tools/measure_regression_bands.py)\n"
        (workdir / "config" / "config.yaml").write_text(text + yaml.safe_dump(variant, sort_keys=False))
    start = time.time()
    proc = snakemake(code, workdir, "--cores", str(cores), "--rerun-incomplete", *targets)
    seconds = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"error: the smoke DAG failed for seed {k} in {workdir}:\n"
                 f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    timing = workdir / "regression-run.json"
    if "Nothing to be done" in proc.stdout + proc.stderr and timing.is_file():
        seconds = json.loads(timing.read_text())["seconds"]  # reused: keep the real run's time
    else:
        timing.write_text(json.dumps({"seed": k, "seconds": round(seconds, 1)}))
    print(f"seed {k}: smoke DAG done in {seconds:.0f} s ({workdir})", flush=True)
    return {"seed": k, "seconds": round(seconds, 1), "seeds_set": shifted}


def git(*args: str) -> str | None:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4, help="number of seed runs (0..N-1), at least 4")
    p.add_argument("--workroot", type=Path, default=None,
                   help="folder for the runs (default: a new temporary folder, kept)")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "regression" / "expected.json")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--reuse", action="store_true",
                   help="keep the code snapshot and run folders; Snakemake only redoes what is out of date")
    p.add_argument("--targets", nargs="*", default=[],
                   help="Snakemake targets (e.g. cca_var_all); default: the whole DAG")
    p.add_argument("--merge-prefix", default="",
                   help="keep --out and replace only the bands whose name starts with this (e.g. "
                        "star/); the runs are recorded under made.additions")
    args = p.parse_args()
    if args.seeds < 4:
        sys.exit("error: --seeds must be at least 4 (a band from fewer runs is a guess)")
    os.nice(args.nice)
    workroot = args.workroot
    if workroot is None:
        import tempfile

        workroot = Path(tempfile.mkdtemp(prefix="regression-bands-"))
    code = workroot / "code"
    if not args.reuse and code.exists():
        shutil.rmtree(code)
    code_state = snapshot(code)
    smoke_config = code / ".test" / "config" / "config.yaml"
    runs = [run_seed(code, workroot / f"seed-{k}", k, args.cores, args.reuse, args.targets)
            for k in range(args.seeds)]
    meta = {
        "made_by": "tools/measure_regression_bands.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_snapshot": code_state,  # the commit the snapshot was taken from, dirty or not
        "targets": args.targets or ["all"],
        "smoke_config": str(SMOKE_CONFIG.relative_to(ROOT)),
        "smoke_config_sha256": hashlib.sha256(smoke_config.read_bytes()).hexdigest(),
        "seed_shift": "every run-time seed key + K for run K; data seeds unchanged",
        "seeds_varied": sorted(runs[0]["seeds_set"]),
        "runs": [{"seed": r["seed"], "seconds": r["seconds"]} for r in runs],
        "cores": args.cores,
    }
    out = workroot / "bands.json" if args.merge_prefix else args.out
    cmd = [sys.executable, "-m", "guidance_repro", "regression-bands",
           "--runs", *[str(workroot / f"seed-{r['seed']}" / "results") for r in runs],
           "--seeds", *[str(r["seed"]) for r in runs], "--out", str(out), "--meta", json.dumps(meta)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    if args.merge_prefix:
        merge(out, args.out, args.merge_prefix, meta)
    print(f"wrote {args.out} from {len(runs)} seed runs in {workroot}")


def merge(new_path: Path, out: Path, prefix: str, meta: dict) -> None:
    """Replace the bands of ``out`` whose name starts with ``prefix`` by those of ``new_path``."""
    new, doc = json.loads(new_path.read_text()), json.loads(out.read_text())
    added = {k: v for k, v in new["metrics"].items() if k.startswith(prefix)}
    if not added:
        sys.exit(f"error: --merge-prefix {prefix!r}: the runs made no metric of that name")
    if len(new["made"]["seeds"]) != len(doc["made"]["seeds"]):
        sys.exit(f"error: --merge-prefix: {len(new['made']['seeds'])} seed runs, but {out} was made "
                 f"from {len(doc['made']['seeds'])}; every band of one file has the same seed count")
    doc["metrics"] = {**{k: v for k, v in doc["metrics"].items() if not k.startswith(prefix)}, **added}
    doc["made"].setdefault("additions", []).append({**meta, "metrics_prefix": prefix,
                                                    "metrics_added": len(added)})
    write_json(out, doc)
    print(f"{out}: {len(added)} bands for {prefix}* from the new runs, the others kept")


if __name__ == "__main__":
    main()
