"""guidance-repro: reproducing CCA, autoguidance and STAR as one Snakemake DAG.

The library knows nothing about Snakemake: every stage is a command of :mod:`guidance_repro.cli`
with explicit input and output paths.
"""

__version__ = "0.1.0"
