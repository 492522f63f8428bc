# Data stage: verified Fashion-MNIST, captioned compositions, the 2-D tree of Gaussians, and the
# reference splits the metrics compare against.


rule fashion_mnist:
    input:
        fashion_mnist_source,
    output:
        "results/data/fashion_mnist.npz",
    log:
        "results/logs/data/fashion_mnist.log",
    params:
        src=config["data"]["fashion_mnist"]["dir"],
        url=fashion_mnist_url(),
    shell:
        "guidance-repro prepare-fashion-mnist --source {params.src:q}"
        " --download-url={params.url:q} --out {output} > {log} 2>&1"


rule compositions:
    input:
        "results/data/fashion_mnist.npz",
    output:
        data="results/data/compositions.npz",
        preview=report(
            "results/data/compositions_preview.png",
            caption="../report/compositions_preview.rst",
            category="Data",
        ),
    log:
        "results/logs/data/compositions.log",
    params:
        c=config["data"]["compositions"],
    shell:
        "guidance-repro build-compositions --fashion-mnist {input} --out {output.data}"
        " --preview {output.preview} --seed {params.c[seed]} --canvas {params.c[canvas]}"
        " --grid {params.c[grid]} --small {params.c[small]} --large {params.c[large]}"
        " --max-items {params.c[max_items]} --n-train {params.c[n_train]}"
        " --n-clip {params.c[n_clip]} --n-eval {params.c[n_eval]}"
        " --clip-pool {params.c[clip_pool]} > {log} 2>&1"


rule tree_gaussians:
    output:
        "results/data/tree_gaussians.json",
    log:
        "results/logs/data/tree_gaussians.log",
    params:
        seed=config["data"]["tree_gaussians"]["seed"],
    shell:
        "guidance-repro describe-tree-gaussians --seed {params.seed} --out {output} > {log} 2>&1"


rule export_split:
    input:
        "results/data/{dataset}.npz",
    output:
        "results/data/splits/{dataset}-{split}.samples.npz",
    log:
        "results/logs/data/export-{dataset}-{split}.log",
    wildcard_constraints:
        dataset="fashion_mnist|compositions",
    params:
        seed=config["seed"],
    shell:
        "guidance-repro export-split --dataset {wildcards.dataset} --input {input}"
        " --split {wildcards.split} --seed {params.seed} --out {output} > {log} 2>&1"


# The toy tiers' datasets. The paper tier builds only what one of its slices reads (as that rule's
# input), not every toy dataset.
rule data_all:
    input:
        (
            []
            if config["tier"] == "paper"
            else [
                rules.fashion_mnist.output,
                rules.compositions.output,
                rules.tree_gaussians.output,
            ]
        ),
