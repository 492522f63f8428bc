#!/usr/bin/env python
"""Mutation score of the regression check: apply deliberate breakages to a COPY of the source, one
at a time, rerun only the jobs each one touches, run the regression check, and report which were
caught and by which entry (markdown + JSON).

    .venv/bin/python tools/mutation_score.py --base /tmp/smoke --workroot /tmp/mut \
        --out docs/mutation_score.json --markdown docs/mutation_score.md
    .venv/bin/python tools/mutation_score.py --base /tmp/smoke --workroot /tmp/mut --clean 4 ...

``--base`` is the workdir of a finished run of the smoke tier (its config/ and results/). Each
mutation gets WORKROOT/<name>/code (the snapshot of tools/measure_regression_bands.py, mutated) and
WORKROOT/<name>/run (the base results, hard-linked: Snakemake deletes an output before rewriting
it, so the base is never changed), then `snakemake --forcerun <its rules> <its targets>` with the
mutated package first on the path, then the check of the checkout's own (unmutated) code against
tests/regression/expected.json, restricted to the results files present (``partial``), so that a
base run of some slices only still gives a score. Every run also recomputes the golden values
(rule ``golden_values``) and the check compares them with tests/regression/golden.json.
``--clean K`` reruns the same targets K times unmutated with every run-time seed shifted by 1..K
(measure_regression_bands.seed_variant) and counts false alarms.

``--golden-only`` (no ``--base`` needed, ~10 s a mutation): only `guidance-repro golden-values` of
the mutated copy, checked against the golden file alone: which mutations the golden values catch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_regression_bands import seed_variant, snakemake, snapshot  # noqa: E402

from guidance_repro.errors import ReproError  # noqa: E402
from guidance_repro.io import write_json  # noqa: E402
from guidance_repro.report import regression  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "regression" / "expected.json"
GOLDEN = ROOT / "tests" / "regression" / "golden.json"
GOLDEN_RULE, GOLDEN_TARGET = "golden_values", "results/golden/values.json"
PKG = "src/guidance_repro/"
LG_MECH = ["results/cca_llamagen/mechanism/S.json"]
VAR_MECH = ["results/cca_var/mechanism/d2.json"]
AG_MECH = ["results/autoguidance/fmnist/mechanism/guidance.json"]
ST_MECH = ["results/star/mechanism/rope.json"]
AG_EVAL = ["results/autoguidance/fmnist/metrics/cfg-uncond-w2.json"]


CLEAN_TRAINING = ("cca_llamagen_tokenizer", "cca_llamagen_pretrain", "cca_var_tokenizer", "cca_var_pretrain",
                  "star_text_encoder", "star_tokenizer", "star_pretrain", "train_classifier")


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file under src/guidance_repro/, text, replacement)
    rules: tuple[str, ...]                   # rules whose jobs the mutation touches (forced)
    targets: tuple[str, ...]


MUTATIONS = (
    Mutation("llamagen-cfg-scale-ignored", "LlamaGen CFG: guided logits = conditional logits",
             (("guidance/cfg.py", "return cfg_combine(cond, uncond, scale)", "return cfg_combine(cond, uncond, 1.0)"),),
             ("cca_llamagen_mechanism",), tuple(LG_MECH)),
    Mutation("var-ramp-scale-ignored", "VAR CFG ramp: strength 1 + t replaced by 1",
             (("sampling/next_scale.py", "cfg_combine(c, u, 1.0 + cfg_ramp(guidance.scale, si, S))",
               "cfg_combine(c, u, 1.0)"),), ("cca_var_mechanism",), tuple(VAR_MECH)),
    Mutation("edm-cfg-scale-ignored", "EDM guidance: D_w computed with w = 1",
             (("guidance/autoguidance.py", "return combine(guide(x, sigma, labels), main(x, sigma, labels), w)",
               "return combine(guide(x, sigma, labels), main(x, sigma, labels), 1.0)"),),
             ("autoguidance_image_mechanism", "autoguidance_image_sample"), tuple(AG_MECH + AG_EVAL)),
    Mutation("cca-negative-sign-flipped", "CCA: sign of the rolled-negative term flipped",
             (("guidance/cca.py", "s = torch.where(masked, 1.0, -1.0)", "s = torch.where(masked, -1.0, 1.0)"),),
             ("cca_llamagen_mechanism",), tuple(LG_MECH)),
    Mutation("cca-lambda-ignored", "CCA: lambda replaced by 1 (weights and normaliser)",
             (("guidance/cca.py", "    w, s = negative_weights(masked, lam)\n    w, s = w.to(gap_neg.device), s.to(gap_neg.device)\n    pos",
               "    w, s = negative_weights(masked, 1.0)\n    w, s = w.to(gap_neg.device), s.to(gap_neg.device)\n    pos"),
              ("guidance/cca.py", "return (pos + neg) / max(lam, 1.0)", "return (pos + neg) / 1.0")),
             ("cca_llamagen_mechanism",), tuple(LG_MECH)),
    Mutation("cca-beta-ignored", "CCA: beta_eff fixed to 1",
             (("guidance/cca.py", "return beta / num_tokens if mode == \"per_token\" else beta", "return 1.0"),),
             ("cca_llamagen_mechanism",), tuple(LG_MECH)),
    Mutation("null-class-never-used", "CFG samplers: the unconditional half gets the true labels",
             (("sampling/ar.py", "labels = torch.cat([labels, torch.full_like(labels, model.null_class)])",
               "labels = torch.cat([labels, labels])"),
              ("sampling/next_scale.py", "labels = torch.cat([labels, torch.full_like(labels, model.null_class)])",
               "labels = torch.cat([labels, labels])")),
             ("cca_llamagen_mechanism", "cca_var_mechanism"), tuple(LG_MECH + VAR_MECH)),
    Mutation("autoguidance-guide-is-main", "autoguidance: the guide replaced by the main model",
             (("guidance/autoguidance.py", "return combine(guide(x, sigma, labels), main(x, sigma, labels), w)",
               "return combine(main(x, sigma, labels), main(x, sigma, labels), w)"),),
             ("autoguidance_image_mechanism", "autoguidance_image_sample"), tuple(AG_MECH + AG_EVAL)),
    Mutation("ema-disabled", "EMA: the average is the last raw weights",
             (("train/ema.py", "self.shadow[n].lerp_(params[n].detach().float(), 1.0 - beta)",
               "self.shadow[n].copy_(params[n].detach().float())"),),
             ("autoguidance_image_train",), tuple(AG_MECH)),
    Mutation("rope-2d-halves-swapped", "2-D RoPE: row and column halves swapped",
             (("nn/rope2d.py", "torch.cat([x[:, None] * f, y[:, None] * f], 1)",
               "torch.cat([y[:, None] * f, x[:, None] * f], 1)"),), ("star_mechanism",), tuple(ST_MECH)),
    Mutation("rope-unnormalized", "2-D RoPE: unnormalized positions (x = column index)",
             (("nn/rope2d.py", "x, y = x * (norm / (pn - 1)), y * (norm / (pn - 1))", "x, y = x, y"),),
             ("star_mechanism",), tuple(ST_MECH)),
    Mutation("pr-radii-k1", "precision/recall: k-NN radii with k = 1",
             (("metrics/precision_recall.py", "torch.kthvalue(d, k + 1, dim=1)", "torch.kthvalue(d, 2, dim=1)"),),
             ("reference_stats_fashion_mnist", "autoguidance_evaluate"), tuple(AG_EVAL)),
    Mutation("fid-reference-is-samples", "FID: reference statistics swapped for the samples' own",
             (("metrics/evaluate.py", "out[\"fid\"] = fid_mod.fid_from_stats(mu, sigma, ref[\"mu\"], ref[\"sigma\"])",
               "out[\"fid\"] = fid_mod.fid_from_stats(mu, sigma, mu, sigma)"),),
             ("autoguidance_evaluate",), tuple(AG_EVAL)),
)


def mutate(code: Path, m: Mutation) -> None:
    for rel, text, new in m.edits:
        path = code / PKG / rel
        src = path.read_text()
        if src.count(text) != 1:
            raise ReproError(f"mutation {m.name}: {PKG}{rel} holds {src.count(text)} copies of {text!r}, "
                             "1 needed (the code moved: update tools/mutation_score.py)")
        path.write_text(src.replace(text, new))


def prepare_run(base: Path, run: Path, cfg: dict | None) -> None:
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(base / "results"), str(run / "results")], check=True)
    shutil.copytree(base / "config", run / "config")
    if cfg is not None:
        (run / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def check(run: Path, golden_only: bool = False) -> regression.CheckResult:
    bands, golden, rules = regression.load_entries(EXPECTED)
    golden = {**golden, **regression.load_golden(GOLDEN)}
    if golden_only:
        bands, rules = {}, []
    return regression.check(regression.collect_metrics(run / "results"), bands, golden, rules, partial=True)


def _outcome(run: Path, seconds: float, golden_only: bool = False) -> dict:
    result = check(run, golden_only)
    return {"ran": True, "seconds": round(seconds, 1), "caught": not result.ok,
            "failures": [{"kind": k, "entry": msg} for k, msg in result.failures]}


def run_one(code: Path, run: Path, rules: tuple[str, ...], targets: tuple[str, ...], cores: int) -> dict:
    t0 = time.time()
    proc = snakemake(code, run, "--cores", str(cores), "--forcerun", *rules, GOLDEN_RULE,
                     "--", *targets, GOLDEN_TARGET)
    seconds = time.time() - t0
    if proc.returncode != 0:
        return {"ran": False, "seconds": seconds, "error": (proc.stdout + proc.stderr)[-1500:]}
    return _outcome(run, seconds)


def run_golden_only(code: Path, run: Path) -> dict:
    """The mutated copy's golden values (its package first on the path), checked by this checkout."""
    if run.exists():
        shutil.rmtree(run)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "guidance_repro", "golden-values", "--out",
                           str(run / GOLDEN_TARGET)], cwd=code, capture_output=True, text=True, env=env)
    seconds = time.time() - t0
    if proc.returncode != 0:
        return {"ran": False, "seconds": seconds, "error": (proc.stdout + proc.stderr)[-1500:]}
    return _outcome(run, seconds, golden_only=True)


def markdown(rows: list[dict], clean: list[dict]) -> str:
    lines = ["| mutation | what | caught | by (kind: entry) | s |", "|---|---|---|---|---|"]
    for r in rows:
        if not r["ran"]:
            lines.append(f"| {r['name']} | {r['what']} | did not run | | {r['seconds']:.0f} |")
            continue
        by = "<br>".join(f"{f['kind']}: {f['entry'][:140]}" for f in r["failures"][:3]) or "—"
        lines.append(f"| {r['name']} | {r['what']} | {'yes' if r['caught'] else '**no**'} | {by} | {r['seconds']:.0f} |")
    caught = sum(r.get("caught", False) for r in rows)
    lines += ["", f"Caught: {caught} of {len(rows)}."]
    if clean:
        alarms = sum(c.get("caught", True) for c in clean)
        lines.append(f"False alarms: {alarms} of {len(clean)} seed-shifted clean runs "
                     f"(shifts {', '.join(str(c['shift']) for c in clean)}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, help="workdir of a finished smoke run (not with --golden-only)")
    ap.add_argument("--golden-only", action="store_true", help="only the golden values of each mutated copy")
    ap.add_argument("--workroot", required=True, type=Path)
    ap.add_argument("--only", nargs="*", default=[], help="names of the mutations to run (default all)")
    ap.add_argument("--clean", type=int, default=0, help="seed-shifted clean runs (false alarms), shifts 1..K")
    ap.add_argument("--clean-shifts", nargs="*", type=int, default=[], help="these seed shifts instead")
    ap.add_argument("--no-mutations", action="store_true", help="only the clean runs")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", required=True, type=Path, help="JSON table")
    ap.add_argument("--markdown", required=True, type=Path, help="markdown table")
    args = ap.parse_args()
    unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
    if unknown:
        raise SystemExit(f"--only: unknown mutation {unknown[0]}")
    if not args.golden_only and not (args.base and (args.base / "results").is_dir()):
        raise SystemExit(f"--base: {args.base}/results is not a folder")
    if args.golden_only and (args.clean or args.clean_shifts):
        raise SystemExit("--golden-only: the golden values do not depend on the seeds; no clean runs")
    rows = []
    for m in MUTATIONS:
        if args.no_mutations or (args.only and m.name not in args.only):
            continue
        code = args.workroot / m.name / "code"
        if code.exists():
            shutil.rmtree(code)
        snapshot(code)
        mutate(code, m)
        run = args.workroot / m.name / "run"
        if args.golden_only:
            outcome = run_golden_only(code, run)
        else:
            prepare_run(args.base, run, None)
            outcome = run_one(code, run, m.rules, m.targets, args.cores)
        row = {"name": m.name, "what": m.what, "rules": list(m.rules), "targets": list(m.targets), **outcome}
        print(f"{m.name}: {'caught' if row.get('caught') else 'NOT caught' if row['ran'] else 'did not run'}"
              f" ({row['seconds']:.0f} s)", flush=True)
        rows.append(row)
    clean = []
    shifts = args.clean_shifts or list(range(1, args.clean + 1))
    if shifts:
        code = args.workroot / "clean" / "code"
        snapshot(code)
        cfg = yaml.safe_load((args.base / "config" / "config.yaml").read_text())
        # The seeds shifted reach the results only through the jobs that read them: the training of
        # every model the targets use, the sampling and the evaluation.
        rules = tuple(sorted({r for m in MUTATIONS for r in m.rules} | set(CLEAN_TRAINING)))
        targets = tuple(sorted({t for m in MUTATIONS for t in m.targets}))
        for k in shifts:
            run = args.workroot / "clean" / f"shift{k}"
            prepare_run(args.base, run, seed_variant(cfg, k)[0])
            res = run_one(code, run, rules, targets, args.cores)
            clean.append({"shift": k, **res})
            print(f"clean shift {k}: {'FALSE ALARM' if res.get('caught', True) else 'ok'} ({res['seconds']:.0f} s)",
                  flush=True)
    write_json(args.out, {"mutations": rows, "clean_runs": clean, "expected": str(EXPECTED.relative_to(ROOT)),
                          "golden": str(GOLDEN.relative_to(ROOT)), "golden_only": args.golden_only})
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(rows, clean))
    print(markdown(rows, clean))


if __name__ == "__main__":
    main()
