# The one `evaluate` rule every experiment uses: a samples file -> a metrics JSON (FID, IS,
# precision, recall) with the protocol recorded. Experiments on Fashion-MNIST are measured with the
# toy classifier against the test split's reference statistics, those on the captioned compositions
# (star) with the composition evaluator against the eval split's (common.smk EVALUATE_SETUPS).


rule evaluate:
    input:
        samples="results/{experiment}/samples/{point}.npz",
        ref=evaluate_reference,
        evaluator=evaluate_evaluator,
    output:
        "results/{experiment}/metrics/{point}.json",
    log:
        "results/{experiment}/logs/evaluate-{point}.log",
    wildcard_constraints:
        experiment="cca_llamagen|cca_var|autoguidance/fmnist|star",
    threads: 1
    params:
        seed=config["evaluation"]["seed"],
        metrics=evaluate_metrics,
        kind=evaluate_kind,
        k=config["evaluation"]["pr_k"],
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro evaluate --samples {input.samples}"
        " --reference {input.ref} --evaluator {params.kind}"
        " --evaluator-checkpoint {input.evaluator} --metrics {params.metrics}"
        " --pr-k {params.k}"
        " --seed {params.seed} --out {output} > {log} 2>&1"
