# Evaluation: every samples file of an experiment -> a metrics JSON per point (FID, IS, precision,
# recall) with the protocol recorded. Experiments on Fashion-MNIST are measured with the toy
# classifier against the test split's reference statistics, those on the captioned compositions
# (star) with the composition evaluator against the eval split's (common.smk EVALUATE_SETUPS).
#
# One job per experiment evaluates all of its points in one process: a point takes under a second,
# while a process that imports torch and clean-fid (and with it torchvision) takes about 4 s to
# start, which made 50 one-point jobs cost ~4 job-minutes of the default run. The outputs are still
# one metrics file per point, so the tables and figures depend on exactly the points they read.
# Included after the slices: the point lists (common.smk evaluated_points) come from their
# *_common.smk.


for _experiment, _points in evaluated_points().items():

    rule:
        name:
            f"{_experiment.split('/')[0]}_evaluate"
        input:
            samples=[f"results/{_experiment}/samples/{p}.npz" for p in _points],
            ref=evaluate_reference(_experiment),
            evaluator=evaluate_evaluator(_experiment),
        output:
            [f"results/{_experiment}/metrics/{p}.json" for p in _points],
        log:
            f"results/{_experiment}/logs/evaluate.log",
        threads: 1
        resources:
            **job_resources("evaluation"),
        params:
            seed=config["evaluation"]["seed"],
            metrics=evaluate_metrics(_experiment),
            kind=evaluate_kind(_experiment),
            k=config["evaluation"]["pr_k"],
        shell:
            "OMP_NUM_THREADS={threads} guidance-repro evaluate --samples {input.samples}"
            " --reference {input.ref} --evaluator {params.kind}"
            " --evaluator-checkpoint {input.evaluator} --metrics {params.metrics}"
            " --pr-k {params.k}"
            " --seed {params.seed} --out {output} > {log} 2>&1"
