"""Write the numbers the README shows from a run's results/, so that none of them is typed by hand.

    python tools/write_results_doc.py --results results        (what `make docs` runs)

reads results/claims.csv + claims.md, results/matrix.csv + matrix.md, results/run_record.json and
the figures in FIGURES, then writes
  - docs/results.md: the run's header (tier, commit, dirty flag, date, CPU model, cores), the full
    claims table and cross-method matrix, every figure of FIGURES;
  - docs/figures/*.png: copies of those figures;
  - README.md, between BEGIN and END only: the claims' verdicts per paper, the matrix (FID / recall),
    the README's figures and the commit and CPU line.
Every input is checked before anything is written, so a missing file (named in the error) leaves
the docs as they were.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path
from guidance_repro.report import verdict
from guidance_repro.report.paper_figures import PAPERS

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

# (figure in results/, its name under docs/figures/, caption, shown in the README too)
FIGURES = [
    ("cca_llamagen/figures/fig1_bars.png", "cca_fig1_bars.png",
     "CCA, LlamaGen-style: FID and IS without guidance, after CCA, with CFG "
     "(layout of the paper's Fig. 1)", True),
    ("cca_llamagen/figures/fig4_tradeoff.png", "cca_llamagen_tradeoff.png",
     "CCA, LlamaGen-style: FID-IS trade-off, CFG over its scale against CCA over lambda "
     "(layout of the paper's Fig. 4)", False),
    ("autoguidance/toy2d/figure1.png", "autoguidance_toy2d.png",
     "Autoguidance, the 2-D toy: ground truth, unguided, CFG, score scaling, autoguidance "
     "(layout of the paper's Fig. 1)", True),
    ("autoguidance/fmnist/report/fid_vs_w.png", "autoguidance_fmnist_fid_vs_w.png",
     "Autoguidance on Fashion-MNIST: FID over the guidance weight w for CFG and each guide, "
     "precision-recall at each curve's best FID",
     True),
    ("star/figures/clip_fid.png", "star_clip_fid.png",
     "Toy STAR: CLIP score against FID, CFG over its scale and guidance-free CCA over lambda",
     False),
    ("figures/matrix.png", "matrix.png",
     "Cross-method matrix: best FID, recall and relative cost per method and family", True),
]

TIER_NOTES = {
    "smoke": "This is the **smoke tier** (small subsets, a few training steps): it shows that the "
             "pipeline runs end to end; its numbers are mostly seed noise and say nothing about "
             "the papers. The release regenerates these numbers from a default (toy) tier run.",
    "toy": "Toy tier: only the direction of each claim can be compared with the paper, never "
           "the values.",
}
CLAIM_COLUMNS = ("paper", "claim", "verdict")
MATRIX_COLUMNS = ("family", "model", "method", "point", "fid", "recall", "note")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ReproError(f"{path}: missing (needed by make docs; is this a finished run's results/?)")
    return path


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    with open(_require(path), newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ReproError(f"{path}: no column(s) {missing} (has {reader.fieldnames})")
        rows = list(reader)
    if not rows:
        raise ReproError(f"{path}: no rows")
    return rows


def read_claims(path: Path) -> list[dict]:
    """Rows of results/claims.csv with ``verdict`` one of holds / does not hold / inconclusive, or
    '' (not measured); anything else -> ReproError naming the line."""
    rows = _read_csv(path, CLAIM_COLUMNS)
    for line, r in enumerate(rows, start=2):
        v = r["verdict"].strip().lower()
        if v not in (*verdict.OUTCOMES, ""):
            raise ReproError(f"{path}: line {line}: verdict must be one of {', '.join(verdict.OUTCOMES)} "
                             f"or empty, got {v!r}")
        r["verdict"] = v
    return rows


def read_matrix(path: Path) -> list[dict]:
    """Rows of results/matrix.csv; FID and recall are numbers, or both empty (no point)."""
    rows = _read_csv(path, MATRIX_COLUMNS)
    for line, r in enumerate(rows, start=2):
        try:
            if r["fid"].strip():
                float(r["fid"]), float(r["recall"])
        except ValueError:
            raise ReproError(f"{path}: line {line}: fid / recall must be numbers, got "
                             f"{r['fid']!r} / {r['recall']!r}") from None
    return rows


def read_run_record(path: Path) -> dict:
    """The header facts of a run: tier, commit, dirty flag, date, CPU model and cores."""
    try:
        rec = json.loads(_require(path).read_text())
    except json.JSONDecodeError as exc:
        raise ReproError(f"{path}: not JSON ({exc})") from None
    hw = rec.get("hardware") or {}
    cpu = hw.get("cpu") or {}
    tier = (rec.get("config") or {}).get("tier")
    if not tier or not rec.get("git_commit"):
        raise ReproError(f"{path}: no config.tier or git_commit: not a run record")
    # hardware.cpu.model is the /proc/cpuinfo name; records written before it existed only
    # have Python's platform strings, of which processor is often empty on Linux.
    if cpu.get("model"):
        machine = cpu["model"]
    elif hw.get("processor"):
        machine = hw["processor"]
    else:
        machine = f"a CPU whose model was not recorded (platform {hw.get('platform') or 'unknown'})"
    return {"tier": tier, "commit": rec["git_commit"], "dirty": rec.get("git_dirty"),
            "created": _when(rec.get("created")), "cpu": machine,
            "capability": cpu.get("capability"), "cores": hw.get("cpu_count"),
            "memory_gib": hw.get("memory_gib"), "gpus": hw.get("gpus") or []}


def _when(created: str | None) -> str:
    try:
        return datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M %Z").strip()
    except (TypeError, ValueError):
        return created or "date not recorded"


def machine_line(run: dict) -> str:
    dirty = {True: " (working tree with uncommitted changes)", False: "",
             None: " (dirty flag unknown)"}
    cores = f", {run['cores']} cores" if run["cores"] else ""
    cap = f", torch CPU capability {run['capability']}" if run["capability"] else ""
    gpus = f", GPUs: {', '.join(run['gpus'])}" if run["gpus"] else ""
    return (f"**{run['tier']}** tier run of commit `{run['commit'][:7]}`"
            f"{dirty.get(run['dirty'], dirty[None])}, "
            f"{run['created']}, on {run['cpu']}{cores}{cap}{gpus}.")


def claims_summary(rows: list[dict]) -> str:
    """One sentence: per paper (in the table's order) and overall, how the measured claims came out
    (the three words of report/verdict.py)."""
    def count(part: list[dict]) -> str:
        unmeasured = sum(not r["verdict"] for r in part)
        return verdict.counts_text(r["verdict"] for r in part) + (
            f", {unmeasured} not measured" if unmeasured else "")
    papers = dict.fromkeys(r["paper"] for r in rows)
    per_paper = "; ".join(f"{PAPERS.get(k, k)}: {count([r for r in rows if r['paper'] == k])}"
                          for k in papers)
    return (f"Claims, decided over replicate re-trainings ({verdict.RULE}): {per_paper}; "
            f"**all: {count(rows)}**.")


def _cell(row: dict) -> str:
    if not row["fid"].strip():
        return "—"
    point = row["point"].strip()
    tail = f" ({point})" if point and point != "—" else ""
    return f"{float(row['fid']):.1f} / {float(row['recall']):.2g}{tail}"


def matrix_table(rows: list[dict]) -> list[str]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    families = list(dict.fromkeys((r["family"], r["model"]) for r in rows))
    cells = {(r["family"], r["model"], r["method"]): _cell(r) for r in rows}
    out = ["| family (model) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for fam, model in families:
        out.append(f"| {fam} ({model}) | "
                   + " | ".join(cells.get((fam, model, m), "—") for m in methods) + " |")
    return out


def readme_block(run: dict, claims: list[dict], matrix: list[dict]) -> str:
    figures = [f"![{cap}](docs/figures/{name})" for _, name, cap, shown in FIGURES if shown]
    lines = [BEGIN,
             "<!-- Everything from here to the end marker is generated by `make docs` "
             "(tools/write_results_doc.py) from a run's results/; edit the generator, not this "
             "text. -->", "",
             f"Numbers and figures of a {machine_line(run)}",
             TIER_NOTES.get(run["tier"], ""), "",
             claims_summary(claims) + " Every claim, its test and the paper's figure: "
             "[docs/results.md](docs/results.md).", "",
             "Cross-method matrix, best point per method (FID / recall, lower FID is better; — : "
             "no point, because the method does not apply to the family or was not sampled in "
             "this run, as the full matrix says):", "",
             *matrix_table(matrix), "", *figures, END]
    return "\n".join(lines)


def _demoted(markdown: str) -> str:
    """A results/*.md file as a section of docs/results.md (each heading one level down)."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown.strip(), flags=re.MULTILINE)


def results_doc(run: dict, claims_md: str, matrix_md: str) -> str:
    mem = f"{run['memory_gib']} GiB" if run["memory_gib"] else "not recorded"
    dirty = {True: "yes (uncommitted changes)", False: "no"}.get(run["dirty"], "not recorded")
    lines = ["# Results of one run",
             "",
             "<!-- Generated by `make docs` (tools/write_results_doc.py) from a run's results/: "
             "do not edit by hand. -->",
             "",
             "| | |", "|---|---|",
             f"| tier | {run['tier']} |",
             f"| git commit | `{run['commit']}` |",
             f"| working tree dirty | {dirty} |",
             f"| run record written | {run['created']} |",
             f"| CPU | {run['cpu']} |",
             f"| cores | {run['cores']} |",
             f"| memory | {mem} |",
             f"| GPUs | {', '.join(run['gpus']) or 'none'} |",
             "", TIER_NOTES.get(run["tier"], ""), "",
             _demoted(claims_md), "", _demoted(matrix_md), "", "## Figures", ""]
    for _, name, cap, _ in FIGURES:
        lines += [f"![{cap}](figures/{name})", "", f"*{cap}.*", ""]
    return "\n".join(lines)


def replace_block(text: str, block: str, path: Path) -> str:
    """``text`` with the one BEGIN ... END block replaced; everything outside it unchanged."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ReproError(f"{path}: needs exactly one {BEGIN} and one {END} line "
                         f"(found {text.count(BEGIN)} and {text.count(END)})")
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    if stop < start:
        raise ReproError(f"{path}: {END} comes before {BEGIN}")
    return text[:start] + block + text[stop:]


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        tmp.write_text(text)


def write_docs(results: Path, readme: Path, doc: Path, figures_dir: Path) -> None:
    run = read_run_record(results / "run_record.json")
    claims = read_claims(results / "claims.csv")
    matrix = read_matrix(results / "matrix.csv")
    claims_md = _require(results / "claims.md").read_text()
    matrix_md = _require(results / "matrix.md").read_text()
    sources = [(_require(results / src), figures_dir / name) for src, name, _, _ in FIGURES]
    new_readme = replace_block(_require(readme).read_text(), readme_block(run, claims, matrix),
                               readme)
    for src, dest in sources:
        with atomic_path(dest, suffix=".tmp.png") as tmp:
            shutil.copyfile(src, tmp)
    _write_text(doc, results_doc(run, claims_md, matrix_md) + "\n")
    _write_text(readme, new_readme)


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=root / "results", help="a finished run's results/")
    p.add_argument("--readme", type=Path, default=root / "README.md")
    p.add_argument("--doc", type=Path, default=root / "docs" / "results.md")
    p.add_argument("--figures-dir", type=Path, default=root / "docs" / "figures")
    args = p.parse_args(argv)
    try:
        write_docs(args.results, args.readme, args.doc, args.figures_dir)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.doc}, {len(FIGURES)} figures in {args.figures_dir}, the results block of "
          f"{args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
