# Golden values for the regression check (docs/regression.md, kind `golden`): fixed computations
# on seeded tiny weights, independent of the config and of every other job, recomputed at every
# non-paper tier so that `regression-check --golden tests/regression/golden.json` can compare them;
# at one thread, one of the two thread counts the tolerances were measured at.


rule golden_values:
    output:
        "results/golden/values.json",
    log:
        "results/logs/golden/values.log",
    shell:
        "guidance-repro golden-values --threads 1 --out {output} > {log} 2>&1"


rule regression_all:
    input:
        [] if config["tier"] == "paper" else rules.golden_values.output,
