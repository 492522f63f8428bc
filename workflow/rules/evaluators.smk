# Evaluators of the toy tier, trained in the DAG with the shared loop on data no generator trains
# on, their quality on held-out data, and the reference statistics every experiment's metrics are
# computed against. One thread each, priority 50: they start as soon as their data exists. (With
# every core asked for, they waited for two free cores until minute 22 of the default run, and a
# second thread bought 1.3x for 2x the core time: 30.8 s -> 23.8 s on 300 classifier steps.)


rule train_classifier:
    input:
        data="results/data/fashion_mnist.npz",
    output:
        "results/evaluators/classifier.pt",
    log:
        "results/logs/evaluators/classifier.log",
    priority: 50
    threads: 1
    resources:
        **job_resources("training"),
    params:
        run=train_launcher(config["evaluators"]["classifier"], "training"),
        p=train_params(config["evaluators"]["classifier"]),
    shell:
        "{params.run} --task fmnist-classifier --params {params.p}"
        " --input data={input.data} --out {output} > {log} 2>&1"


rule train_composition_evaluator:
    input:
        data="results/data/compositions.npz",
    output:
        "results/evaluators/composition.pt",
    log:
        "results/logs/evaluators/composition.log",
    priority: 50
    threads: 1
    resources:
        **job_resources("training"),
    params:
        run=train_launcher(config["evaluators"]["composition"], "training"),
        p=train_params(config["evaluators"]["composition"]),
    shell:
        "{params.run} --task composition-evaluator --params {params.p}"
        " --input data={input.data} --out {output} > {log} 2>&1"


rule train_judge_clip:
    input:
        data="results/data/compositions.npz",
    output:
        "results/evaluators/judge_clip.pt",
    log:
        "results/logs/evaluators/judge_clip.log",
    priority: 50
    threads: 1
    resources:
        **job_resources("training"),
    params:
        run=train_launcher(config["evaluators"]["judge_clip"], "training"),
        p=train_params(config["evaluators"]["judge_clip"]),
    shell:
        "{params.run} --task judge-clip --params {params.p}"
        " --input data={input.data} --out {output} > {log} 2>&1"


rule evaluator_quality:
    input:
        model="results/evaluators/{name}.pt",
        data=evaluator_data,
    output:
        "results/evaluators/{name}_quality.json",
    log:
        "results/logs/evaluators/{name}_quality.log",
    wildcard_constraints:
        name="classifier|composition|judge_clip",
    params:
        kind=evaluator_kind,
    shell:
        "guidance-repro evaluator-quality --kind {params.kind} --model {input.model}"
        " --data {input.data} --out {output} > {log} 2>&1"


rule reference_stats_fashion_mnist:
    input:
        data="results/data/fashion_mnist.npz",
        evaluator="results/evaluators/classifier.pt",
    output:
        "results/reference/fashion_mnist-{split}.toy-classifier.npz",
    log:
        "results/logs/reference/fashion_mnist-{split}.toy-classifier.log",
    priority: 50
    params:
        seed=config["evaluation"]["seed"],
        maxf=config["evaluation"]["max_reference_features"],
    shell:
        "guidance-repro reference-stats --images {input.data} --split-key {wildcards.split}"
        " --dataset fashion_mnist --evaluator toy-classifier"
        " --evaluator-checkpoint {input.evaluator}"
        " --max-features {params.maxf}"
        " --seed {params.seed} --out {output} > {log} 2>&1"


rule reference_stats_compositions:
    input:
        data="results/data/splits/compositions-{split}.samples.npz",
        evaluator="results/evaluators/composition.pt",
    output:
        "results/reference/compositions-{split}.toy-composition.npz",
    log:
        "results/logs/reference/compositions-{split}.toy-composition.log",
    priority: 50
    params:
        seed=config["evaluation"]["seed"],
        maxf=config["evaluation"]["max_reference_features"],
    shell:
        "guidance-repro reference-stats --images {input.data} --dataset compositions"
        " --evaluator toy-composition --evaluator-checkpoint {input.evaluator}"
        " --max-features {params.maxf}"
        " --seed {params.seed} --out {output} > {log} 2>&1"


# The toy feature networks and their checks. The paper tier trains one only where a slice of it
# evaluates with it (an input of that slice's rules), never all of them.
rule evaluators_all:
    input:
        (
            []
            if config["tier"] == "paper"
            else [
                expand(
                    "results/evaluators/{name}_quality.json",
                    name=["classifier", "composition", "judge_clip"],
                ),
                "results/reference/fashion_mnist-test.toy-classifier.npz",
                "results/reference/compositions-eval.toy-composition.npz",
                expand(
                    "results/evaluators/{name}.curve.csv",
                    name=["classifier", "composition", "judge_clip"],
                ),
            ]
        ),


rule training_curve:
    input:
        "{model}.pt",
    output:
        "{model}.curve.csv",
    log:
        "{model}.curve.log",
    params:
        log=training_log,
    shell:
        "guidance-repro training-curve --log {params.log} --out {output} > {log} 2>&1"
