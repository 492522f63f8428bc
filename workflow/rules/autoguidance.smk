# Autoguidance (Karras et al. 2024). 2-D toy: three toy2d-density models -> Fig. 1 panels, exact
# numbers, claims. Fashion-MNIST: EDM denoisers (main, guides, unconditional CFG guide) -> one
# samples file per (method, guide, w) -> metrics of every point (one `autoguidance_evaluate` job)
# -> report (FID vs w, PR, grids, Table 1-style ablation, claims). Paper tier: EDM2 pickle check
# (autoguidance.edm2).


include: "autoguidance_common.smk"


rule autoguidance_toy_train:
    output:
        f"{AG_TOY}/models/{{model}}.pt",
    log:
        f"{AG_TOY}/logs/train-{{model}}.log",
    wildcard_constraints:
        model="main|autoguide|uncond",
    threads: 1
    params:
        p=ag_toy_params,
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro train --task toy2d-density --params {params.p}"
        " --no-progress --out {output} > {log} 2>&1"


rule autoguidance_toy_figure:
    input:
        main=f"{AG_TOY}/models/main.pt",
        autoguide=f"{AG_TOY}/models/autoguide.pt",
        uncond=f"{AG_TOY}/models/uncond.pt",
    output:
        figure=report(
            f"{AG_TOY}/figure1.png",
            caption="../report/autoguidance_toy.rst",
            category="Autoguidance",
        ),
        metrics=f"{AG_TOY}/metrics.json",
        claims=f"{AG_TOY}/claims.csv",
        samples=f"{AG_TOY}/samples.npz",
    log:
        f"{AG_TOY}/logs/figure.log",
    threads: 1
    params:
        t=lambda w: AG["toy"],
        sampler=lambda w: as_json(AG["toy"]["sampler"]),
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro autoguidance-toy-figure --main {input.main}"
        " --autoguide {input.autoguide} --uncond {input.uncond}"
        " --num-samples {params.t[num_samples]} --seed {params.t[seed]}"
        " --tree-seed {params.t[tree_seed]} --sampler {params.sampler}"
        " --cfg-w {params.t[cfg_w]} --autoguidance-w {params.t[autoguidance_w]}"
        " --score-scale {params.t[score_scale]}"
        " --outlier-quantile {params.t[outlier_quantile]}"
        " --coverage-min-count {params.t[coverage_min_count]}"
        " --threshold-samples {params.t[threshold_samples]}"
        " --out-figure {output.figure} --out-metrics {output.metrics}"
        " --out-claims {output.claims} --out-samples {output.samples} > {log} 2>&1"


rule autoguidance_image_train:
    input:
        data="results/data/fashion_mnist.npz",
    output:
        f"{AG_IMG}/models/{{model}}.pt",
    log:
        f"{AG_IMG}/logs/train-{{model}}.log",
    threads: 1
    params:
        p=ag_image_params,
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro train --task edm-fmnist --params {params.p}"
        " --input data={input.data} --no-progress --out {output} > {log} 2>&1"


rule autoguidance_image_sample:
    input:
        main=f"{AG_IMG}/models/main.pt",
        guide=ag_guide_model,
    output:
        f"{AG_IMG}/samples/{{method}}-{{guide}}-w{{w}}.npz",
    log:
        f"{AG_IMG}/logs/sample-{{method}}-{{guide}}-w{{w}}.log",
    wildcard_constraints:
        method="none|cfg|autoguidance",
        guide="[A-Za-z0-9_]+",
    threads: 1
    params:
        i=lambda w: AG["image"],
        sampler=lambda w: as_json(AG["image"]["sampler"]),
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro autoguidance-sample --main {input.main}"
        " --guide '{input.guide}' --guide-name {wildcards.guide} --method {wildcards.method}"
        " --w {wildcards.w} --num {params.i[num_samples]} --seed {params.i[seed]}"
        " --batch {params.i[batch]} --sampler {params.sampler} --no-progress"
        " --out {output} > {log} 2>&1"


rule autoguidance_image_report:
    input:
        metrics=lambda w: expand(
            f"{AG_IMG}/metrics/{{point}}.json", point=ag_image_points()
        ),
        samples=lambda w: expand(
            f"{AG_IMG}/samples/{{point}}.npz", point=ag_image_points()
        ),
    output:
        claims=f"{AG_IMG}/report/claims.csv",
        ablation=f"{AG_IMG}/report/ablation.md",
        points=f"{AG_IMG}/report/points.csv",
        fid=report(
            f"{AG_IMG}/report/fid_vs_w.png",
            caption="../report/autoguidance_fmnist.rst",
            category="Autoguidance",
        ),
        grid=report(
            f"{AG_IMG}/report/samples.png",
            caption="../report/autoguidance_fmnist_samples.rst",
            category="Autoguidance",
        ),
    log:
        f"{AG_IMG}/logs/report.log",
    params:
        out=lambda w, output: str(Path(output.claims).parent),
    shell:
        "guidance-repro autoguidance-report --metrics {input.metrics} --out-dir {params.out}"
        " > {log} 2>&1"


rule autoguidance_edm2_check:
    output:
        "results/autoguidance/edm2/check.json",
    log:
        "results/autoguidance/edm2/check.log",
    params:
        c=lambda w: as_json(AG["edm2"]),
    shell:
        "guidance-repro autoguidance-edm2-check --config {params.c} --out {output} > {log} 2>&1"


rule autoguidance_image_mechanism:
    input:
        main=f"{AG_IMG}/models/main.pt",
        uncond=f"{AG_IMG}/models/uncond.pt",
        autoguide=f"{AG_IMG}/models/autoguide.pt",
    output:
        f"{AG_IMG}/mechanism/guidance.json",
    log:
        f"{AG_IMG}/logs/mechanism.log",
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro autoguidance-mechanism --main {input.main}"
        " --guide cfg={input.uncond} --guide autoguidance={input.autoguide}"
        " --out {output} > {log} 2>&1"


rule autoguidance_all:
    input:
        lambda w: ag_targets(),
