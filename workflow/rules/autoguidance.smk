# Autoguidance (Karras et al. 2024). 2-D toy: three toy2d-density models per replicate -> Fig. 1
# panels (replicate 0), exact numbers and claims (every replicate). Fashion-MNIST: EDM denoisers
# (main, guides, unconditional CFG guide) per replicate -> one sampling job per replicate (the
# sweep for replicate 0, the claim points for the others) -> metrics of every point and of the
# floor (real training images; one `autoguidance_evaluate` job) -> report (FID vs w, PR, grids,
# Table 1-style ablation of replicate 0; claims over the replicates). Paper tier: EDM2 pickle
# check (autoguidance.edm2).


include: "autoguidance_common.smk"


rule autoguidance_toy_train:
    output:
        f"{AG_TOY}/models/{{model}}{{rep}}.pt",
    log:
        f"{AG_TOY}/logs/train-{{model}}{{rep}}.log",
    wildcard_constraints:
        model="main|autoguide|uncond",
        rep=AG_REPLICATE,
    threads: 1
    params:
        p=ag_toy_params,
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro train --task toy2d-density --params {params.p}"
        " --no-progress --out {output} > {log} 2>&1"


# One job for every replicate: the panels of replicate 0 are Fig. 1, each replicate's numbers
# decide the claims (the outlier threshold is computed once). Inputs are functions: a config
# without autoguidance.toy (the paper tiers) still parses.
rule autoguidance_toy_figure:
    input:
        main=lambda w: ag_toy_models("main"),
        autoguide=lambda w: ag_toy_models("autoguide"),
        uncond=lambda w: ag_toy_models("uncond"),
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
        seeds=lambda w: ag_toy_seeds(),
        sampler=lambda w: as_json(AG["toy"]["sampler"]),
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro autoguidance-toy-figure --main {input.main}"
        " --autoguide {input.autoguide} --uncond {input.uncond}"
        " --num-samples {params.t[num_samples]} --seeds {params.seeds}"
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
        f"{AG_IMG}/models/{{model}}{{rep}}.pt",
    log:
        f"{AG_IMG}/logs/train-{{model}}{{rep}}.log",
    wildcard_constraints:
        model="[A-Za-z0-9_]+",
        rep=AG_REPLICATE,
    threads: 1
    params:
        p=ag_image_params,
    shell:
        "OMP_NUM_THREADS={threads} guidance-repro train --task edm-fmnist --params {params.p}"
        " --input data={input.data} --no-progress --out {output} > {log} 2>&1"


# One sampling job per replicate (every point of it in one process: a process costs ~3 s to start
# and load the models, a point at 500 images 10-20 s). Replicate 0 samples the sweep, the others
# the claim points (config image.claim_w).
for _r in ag_image_replicates() if "image" in AG else []:

    rule:
        name:
            f"autoguidance_image_sample{replicate_suffix(_r).replace('-', '_')}"
        input:
            main=f"{AG_IMG}/models/main{replicate_suffix(_r)}.pt",
            guides=list(ag_sample_guides(_r).values()),
        output:
            [f"{AG_IMG}/samples/{p[0]}.npz" for p in ag_image_points_of(_r)],
        log:
            f"{AG_IMG}/logs/sample{replicate_suffix(_r)}.log",
        threads: 1
        params:
            i=AG["image"],
            seed=replicate_seed(AG["image"]["seed"], _r),
            replicate=_r,
            guides=" ".join(f"--guide {g}={p}" for g, p in ag_sample_guides(_r).items()),
            points=ag_sample_spec(_r),
            sampler=as_json(AG["image"]["sampler"]),
        shell:
            "OMP_NUM_THREADS={threads} guidance-repro autoguidance-sample-points"
            " --main {input.main} {params.guides} --points {params.points}"
            " --num {params.i[num_samples]} --seed {params.seed} --replicate {params.replicate}"
            " --batch {params.i[batch]} --sampler {params.sampler} > {log} 2>&1"


rule autoguidance_image_floor:
    input:
        "results/data/fashion_mnist.npz",
    output:
        f"{AG_IMG}/samples/{AG_FLOOR_POINT}.npz",
    log:
        f"{AG_IMG}/logs/floor.log",
    params:
        n=lambda w: AG["image"]["num_samples"],
        seed=config["seed"],
    shell:
        "guidance-repro export-split --dataset fashion_mnist --input {input} --split train"
        " --limit {params.n} --seed {params.seed} --out {output} > {log} 2>&1"


rule autoguidance_image_report:
    input:
        metrics=lambda w: expand(
            f"{AG_IMG}/metrics/{{point}}.json", point=ag_image_points()[:-1]
        ),
        floor=f"{AG_IMG}/metrics/{AG_FLOOR_POINT}.json",
        samples=lambda w: expand(
            f"{AG_IMG}/samples/{{point}}.npz", point=ag_image_points()
        ),
    output:
        claims=f"{AG_IMG}/report/claims.csv",
        ablation=f"{AG_IMG}/report/ablation.md",
        points=f"{AG_IMG}/report/points.csv",
        replicates=f"{AG_IMG}/report/replicates.csv",
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
        claim_w=lambda w: ag_claim_w_json(),
    shell:
        "guidance-repro autoguidance-report --metrics {input.metrics} --floor {input.floor}"
        " --claim-w {params.claim_w} --out-dir {params.out} > {log} 2>&1"


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
