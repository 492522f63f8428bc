"""Regression check of a run's metrics against tolerance bands measured over several seed runs.

A run's metrics are flattened to ``{name: value}``, the name being ``<file under results>:<key>``
(``cca_llamagen/metrics/S-pretrained-cfg2.json:fid``, ``autoguidance/toy2d/metrics.json:
panels.cfg.branch_coverage``). Files are found by pattern, so a new experiment's metrics are
collected without changes here:

- ``<experiment>/metrics/*.json`` and ``<experiment>/<sub>/metrics/*.json`` (the ``evaluate`` rule),
- ``<experiment>/<sub>/metrics.json`` (e.g. the 2-D toy of the autoguidance paper),
- ``evaluators/*_quality.json`` (how good the toy evaluators are),
- ``<experiment>/mechanism/*.json`` and ``<experiment>/<sub>/mechanism/*.json`` (mechanism metrics),
- ``golden/*.json`` (the golden values, golden/values.py).

Every numeric leaf is a metric, except protocol records, claims, config echoes and timings.

Bands (``measure_bands``): for each metric present in every seed run, with min, max over the runs,
``band = [min - m, max + m]`` where ``m = max(margin * (max - min), rel_floor * |mean|, abs_floor)``.
The expected file decides what is checked (``check``), with three kinds of entries, each failure
naming its kind: ``band`` (``metrics``: a metric outside its seed band, or missing), ``golden``
(``golden``: {metric: {value, tol}}, values that do not move with the seed or the CPU, compared
within a tolerance measured across thread counts) and ``mechanism`` (``mechanism``: rules on
mechanism metrics, report/regression_rules.py). A metric the run has but no entry looks at is
reported as unchecked (a new experiment, say), never a failure.
"""

from __future__ import annotations

import fnmatch
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.report.regression_rules import check_rules, validate_rules

PATTERNS = ("*/metrics/*.json", "*/*/metrics/*.json", "*/*/metrics.json", "evaluators/*_quality.json",
            "*/mechanism/*.json", "*/*/mechanism/*.json", "golden/*.json")
KINDS = ("band", "golden", "mechanism")
# Subtrees that are not measurements: the protocol, claims (derived booleans), config echoes.
SKIP_SUBTREES = {"protocol", "claims", "weights", "sampler", "config"}
# Leaves that are counts or settings recorded beside the metrics, not outcomes.
SKIP_KEYS = {"n", "num_samples", "feature_dim", "group_size", "chance", "seed"}

MARGIN = 1.0  # m = MARGIN * (max - min): why in README.md, Regression checks
REL_FLOOR = 1e-3
ABS_FLOOR = 1e-6


def _is_timing(key: str) -> bool:
    return "seconds" in key or key.endswith("_time") or key == "time"


def flatten(obj: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics JSON as {dotted.key: value}, booleans and lists left out."""
    out: dict[str, float] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if key not in SKIP_SUBTREES:
                out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if key not in SKIP_KEYS and not _is_timing(key):
                out[name] = float(value)
    return out


def collect_metrics(results: str | Path) -> dict[str, float]:
    """Every metric of the run whose outputs are in ``results`` (a folder like ``results/``)."""
    results = Path(results)
    if not results.is_dir():
        raise ReproError(f"{results}: no such results folder")
    metrics: dict[str, float] = {}
    files = sorted({p for pattern in PATTERNS for p in results.glob(pattern)
                    if not p.name.endswith(".timing.json")})  # wall-clock side files: not metrics
    for path in files:
        rel = path.relative_to(results).as_posix()
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ReproError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            metrics.update({f"{rel}:{k}": v for k, v in flatten(data).items()})
    if not metrics:
        raise ReproError(f"{results}: no metrics files found (looked for {', '.join(PATTERNS)})")
    return metrics


def band_of(values: list[float], margin: float = MARGIN, rel_floor: float = REL_FLOOR,
            abs_floor: float = ABS_FLOOR) -> dict:
    """The band of one metric from its values over the seed runs."""
    lo, hi, mean = min(values), max(values), statistics.fmean(values)
    m = max(margin * (hi - lo), rel_floor * abs(mean), abs_floor)
    return {"center": mean, "low": lo - m, "high": hi + m, "seeds": len(values),
            "spread": {"min": lo, "max": hi, "range": hi - lo,
                       "std": statistics.stdev(values) if len(values) > 1 else 0.0},
            "values": list(values)}


def measure_bands(runs: list[dict[str, float]], margin: float = MARGIN, rel_floor: float = REL_FLOOR,
                  abs_floor: float = ABS_FLOOR, min_runs: int = 4) -> dict[str, dict]:
    """{metric: band} over the seed runs' metrics; every run must have the same metrics."""
    if len(runs) < min_runs:
        raise ReproError(f"--runs: {len(runs)} seed runs given, at least {min_runs} needed to measure a band")
    names = set(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        differ = sorted(names ^ set(run))
        if differ:
            raise ReproError(f"seed run {i} and seed run 0 have different metrics, e.g. {differ[0]} "
                             f"({len(differ)} differ): were they made by the same DAG and config?")
    bands = {}
    for name in sorted(names):
        values = [run[name] for run in runs]
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise ReproError(f"{name}: not finite in a seed run ({bad[0]}); no band can be measured")
        bands[name] = band_of(values, margin, rel_floor, abs_floor)
    return bands


def _num(x: float) -> str:
    return f"{x:.6g}"


def failure_message(name: str, value: float, band: dict) -> str:
    s = band.get("spread", {})
    where = (f"measured over {band.get('seeds', '?')} seeds: mean {_num(band['center'])}, "
             f"min {_num(s['min'])}, max {_num(s['max'])}" if s else "no spread recorded")
    return f"{name} = {_num(value)} outside the band [{_num(band['low'])}, {_num(band['high'])}] ({where})"


@dataclass
class CheckResult:
    failures: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def count(self, kind: str) -> int:
        return sum(k == kind for k, _ in self.failures)


def _check_bands(metrics: dict[str, float], expected: dict[str, dict], result: CheckResult) -> None:
    for name, band in sorted(expected.items()):
        result.checked.append(name)
        if name not in metrics:
            result.failures.append(("band", f"{name} is missing from the results (expected in the band "
                                            f"[{_num(band['low'])}, {_num(band['high'])}])"))
            continue
        value = metrics[name]
        if not (math.isfinite(value) and band["low"] <= value <= band["high"]):
            result.failures.append(("band", failure_message(name, value, band)))


def _check_golden(metrics: dict[str, float], golden: dict[str, dict], result: CheckResult) -> None:
    for name, entry in sorted(golden.items()):
        result.checked.append(name)
        if name not in metrics:
            result.failures.append(("golden", f"{name} is missing from the results (golden value "
                                              f"{_num(entry['value'])} ± {_num(entry['tol'])})"))
        elif not abs(metrics[name] - entry["value"]) <= entry["tol"]:
            result.failures.append(("golden", f"{name} = {_num(metrics[name])} is not the golden value "
                                              f"{_num(entry['value'])} ± {_num(entry['tol'])}"))


def _present(entries: dict[str, dict], files: set[str]) -> dict[str, dict]:
    return {name: e for name, e in entries.items() if name.split(":", 1)[0] in files}


def check(metrics: dict[str, float], expected: dict[str, dict], golden: dict[str, dict] | None = None,
          rules: list[dict] | None = None, partial: bool = False) -> CheckResult:
    """Compare a run's metrics with the expected bands ({metric: {low, high, ...}}), golden values
    ({metric: {value, tol}}) and mechanism rules (report/regression_rules.py). ``partial``: only
    the entries whose results file the run has (a run of some slices, tools/mutation_score.py)."""
    result = CheckResult()
    golden = golden or {}
    if partial:
        files = {name.split(":", 1)[0] for name in metrics}
        expected, golden = _present(expected, files), _present(golden, files)
        rules = [r for r in rules or [] if fnmatch.filter(sorted(files), r["files"])]
    _check_bands(metrics, expected, result)
    _check_golden(metrics, golden or {}, result)
    failures, checked, used = check_rules(metrics, rules or [])
    result.failures += [("mechanism", f) for f in failures]
    result.checked += checked
    result.unchecked = sorted(set(metrics) - set(expected) - set(golden or {}) - used)
    return result


def load_expected(path: str | Path) -> dict[str, dict]:
    """The ``metrics`` section of an expected file, every band checked for low/high."""
    return load_entries(path)[0]


def _read_json_file(path: Path, missing: str):
    if not path.is_file():
        raise ReproError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReproError(f"{path}: not valid JSON ({exc})") from exc


def load_entries(path: str | Path) -> tuple[dict[str, dict], dict[str, dict], list[dict]]:
    """(bands, golden values, mechanism rules) of an expected file, each checked."""
    path = Path(path)
    data = _read_json_file(path, "no expected-metrics file (make one with tools/measure_regression_bands.py)")
    metrics = data.get("metrics", {}) if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not (metrics or data.get("golden") or data.get("mechanism")):
        raise ReproError(f"{path}: no 'metrics' section (nor golden values or mechanism rules)")
    for name, band in metrics.items():
        if not (isinstance(band, dict) and isinstance(band.get("low"), (int, float))
                and isinstance(band.get("high"), (int, float)) and band["low"] <= band["high"]):
            raise ReproError(f"{path}: metrics.{name} needs numbers low <= high")
    golden = check_golden_section(data.get("golden", {}), path)
    return metrics, golden, validate_rules(data.get("mechanism", []), str(path))


def check_golden_section(golden, path: str | Path) -> dict[str, dict]:
    if not isinstance(golden, dict):
        raise ReproError(f"{path}: 'golden' must map metric names to {{value, tol}}")
    for name, entry in golden.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("value"), (int, float))
                and isinstance(entry.get("tol"), (int, float)) and entry["tol"] >= 0):
            raise ReproError(f"{path}: golden.{name} needs numbers value and tol >= 0")
    return golden


def load_golden(path: str | Path) -> dict[str, dict]:
    """The ``golden`` section of a golden file (tests/regression/golden.json), checked."""
    path = Path(path)
    data = _read_json_file(path, "no golden file (make one with `guidance-repro golden-tolerance`)")
    golden = data.get("golden") if isinstance(data, dict) else None
    if not golden:
        raise ReproError(f"{path}: no 'golden' section")
    return check_golden_section(golden, path)
