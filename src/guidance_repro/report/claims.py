"""The claims table across the three papers: every slice's claims CSV -> one table with this run's
figure, the test, the verdict (holds / does not hold / inconclusive, by the one rule of
report/verdict.py) and the paper's figure with its source and protocol.

The slice claims CSV (what every experiment writes; ``write_slice_csv``) has the columns
``experiment, claim, verdict`` and optionally ``model, test, measured, replicates, floor`` and
``paper_figure, paper_source, paper_protocol`` (a slice's own paper figures override
``paper_figures.FIGURES``). ``verdict`` is holds / does not hold / inconclusive, or empty when the
claim was not measured (true / false, yes / no of two-valued files read as holds / does not
hold). ``replicates`` is R, the number of re-trainings the verdict was decided over; ``floor`` the
slice's reachable floor beside its FIDs (the tokenizer's reconstruction FID, the evaluator's
train/test FID). Other column names are normalised (``holds`` -> ``verdict``, ``value`` /
``reproduced`` -> ``measured``, ``rule`` -> ``test``, ``paper`` -> ``paper_figure``).
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path
from guidance_repro.report import paper_figures as pf
from guidance_repro.report import verdict as vd

SLICE_COLUMNS = ["experiment", "model", "claim", "test", "measured", "replicates", "floor", "verdict"]
REQUIRED = ("experiment", "claim", "verdict")
ALIASES = {"value": "measured", "values": "measured", "reproduced": "measured", "rule": "test",
           "holds": "verdict", "paper": "paper_figure"}
COLUMNS = ["paper", "experiment", "model", "claim", "test", "measured", "replicates", "floor",
           "verdict", "paper_figure", "paper_source", "paper_protocol", "run_protocol", "comparison"]


def write_slice_csv(rows: list[dict], path) -> None:
    """A slice's claims as the shared slice claims CSV."""
    with atomic_path(path, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, SLICE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in SLICE_COLUMNS})


def read_slice_csv(path) -> list[dict]:
    """Rows of one slice claims CSV, columns normalised; a bad file -> ReproError naming it."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = [ALIASES.get(f.strip(), f.strip()) for f in (reader.fieldnames or [])]
            rows = [dict(zip(fields, r.values())) if None not in r else None
                    for r in (dict(x) for x in reader)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReproError(f"{path}: cannot read the claims CSV ({exc})") from None
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise ReproError(f"{path}: claims CSV without column(s) {missing} (has {fields})")
    out = []
    for i, r in enumerate(rows, start=2):
        if r is None:
            raise ReproError(f"{path}: line {i}: more fields than the header")
        if not (r.get("experiment") or "").strip() or not (r.get("claim") or "").strip():
            raise ReproError(f"{path}: line {i}: empty experiment or claim")
        r = {k: ("" if v is None else str(v).strip()) for k, v in r.items()}
        r["verdict"] = vd.normalise(r["verdict"], f"{path}: line {i}")
        r["source_file"] = str(path)
        out.append(r)
    return out


def aggregate(paths: list, tier: str) -> list[dict]:
    """Every slice's claims with the paper's figure, source and protocol beside them."""
    rows = []
    for p in paths:
        for r in read_slice_csv(p):
            exp, claim = r["experiment"], r["claim"]
            fig, src = pf.FIGURES.get((exp, claim), ("", ""))
            theirs, ours = pf.protocol(exp, tier)
            fig = r.get("paper_figure") or fig
            src = r.get("paper_source") or src
            theirs = r.get("paper_protocol") or theirs
            if not fig:
                comparison = "no paper figure recorded for this claim"
            elif tier == "paper":
                comparison = "values comparable (paper protocol)"
            else:
                comparison = "direction only: toy data, models and evaluators"
            rows.append({"paper": pf.paper_of(exp), "experiment": exp, "model": r.get("model", ""),
                         "claim": claim, "test": r.get("test", ""), "measured": r.get("measured", ""),
                         "replicates": r.get("replicates", ""), "floor": r.get("floor", ""),
                         "verdict": r["verdict"], "paper_figure": fig, "paper_source": src,
                         "paper_protocol": theirs, "run_protocol": ours, "comparison": comparison})
    order = list(pf.PAPERS)
    rows.sort(key=lambda r: (order.index(r["paper"]) if r["paper"] in order else len(order),
                             r["experiment"]))
    return rows


def write_csv(rows: list[dict], path) -> None:
    with atomic_path(path, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _counts(rows) -> str:
    return vd.counts_text(r["verdict"] for r in rows)


def shown(verdict: str) -> str:
    return verdict or vd.NOT_MEASURED


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "—"


def markdown(rows: list[dict], tier: str) -> str:
    lines = ["# Claims against the papers", "",
             f"Tier: **{tier}**; claims: {_counts(rows)}. 'this run' is the figure measured by this "
             "run (results/): each side as mean ± sd over the R replicates and the effect in the "
             "claimed direction ± its standard error; 'floor' is the slice's reachable floor "
             "beside its FIDs. The paper's figure and its source (a fact sheet in "
             "../shared/reference/, file and section) stand beside it. At the toy tier only the "
             "direction of a claim is compared, never the values.", "",
             f"Rule: {vd.RULE}.", ""]
    for key, title in pf.PAPERS.items():
        part = [r for r in rows if r["paper"] == key]
        lines.append(f"## {title}")
        lines.append("")
        if not part:
            lines += ["Not in this run: no slice of the DAG wrote claims for this paper.", ""]
            continue
        lines += ["| experiment | model | claim | this run | R | floor | test | verdict | paper | source |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in part:
            cells = [r["experiment"], r["model"], r["claim"], r["measured"], r["replicates"], r["floor"],
                     r["test"], shown(r["verdict"]), r["paper_figure"], r["paper_source"]]
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        protos = sorted({(r["experiment"], r["paper_protocol"], r["run_protocol"]) for r in part})
        lines.append("")
        for exp, theirs, ours in protos:
            lines.append(f"- {exp}: paper protocol: {theirs or '—'}; this run: {ours or '—'}")
        lines.append("")
    other = [r for r in rows if r["paper"] not in pf.PAPERS]
    if other:
        raise ReproError(f"{other[0]['experiment']}: experiment names must start with one of "
                         f"{', '.join(pf.PAPERS)}")
    return "\n".join(lines)


def html_table(rows: list[dict], columns: list[str], title: str, note: str) -> str:
    """A self-contained HTML page with one table (the Snakemake report shows HTML inline)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns)
                   + "</tr>" for r in rows)
    style = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#eee}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h2>{html.escape(title)}</h2>"
            f"<p>{html.escape(note)}</p><table><tr>{head}</tr>{body}</table></body></html>\n")


def write_all(paths: list, tier: str, out_csv, out_md, out_html) -> list[dict]:
    rows = aggregate(paths, tier)
    md = markdown(rows, tier)
    write_csv(rows, out_csv)
    with atomic_path(out_md, suffix=".md.tmp") as tmp:
        tmp.write_text(md + "\n")
    visible = [{**r, "verdict": shown(r["verdict"])} for r in rows]
    cols = ["paper", "experiment", "model", "claim", "measured", "replicates", "floor", "test", "verdict",
            "paper_figure", "paper_source", "comparison"]
    with atomic_path(out_html, suffix=".html.tmp") as tmp:
        tmp.write_text(html_table(visible, cols, "Claims against the papers",
                                  f"Tier {tier}; claims: {_counts(rows)}. Rule: {vd.RULE}. "
                                  "Protocols: results/claims.md."))
    return rows
