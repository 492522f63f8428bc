"""`snakemake --lint` must be clean except for one finding we accept on purpose.

Snakemake's linter asks for a `conda:` or `container:` directive on every rule. This project runs
every rule in ONE pinned environment (pyproject.toml + requirements.lock, built by
tools/setup-env.sh), so per-rule environments would only duplicate it; see config/README.md.
Any other finding fails this check (exit 1) and is printed.
"""

from __future__ import annotations

import re
import subprocess
import sys

ACCEPTED = {"Specify a conda environment or container for each rule."}


def main() -> int:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--cores", "1", *sys.argv[1:]],
                          capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    findings = re.findall(r"^\s+\* (.+?):\s*$", text, flags=re.M)
    bad = [f for f in findings if f not in ACCEPTED]
    if "Error" in text and not findings:
        print(text)
        return 1
    for f in bad:
        print(f"lint: {f}")
    print(f"snakemake --lint: {len(findings)} finding(s), {len(bad)} not accepted")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
