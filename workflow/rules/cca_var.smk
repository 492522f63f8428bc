# CCA on VAR-style next-scale AR (toy tier: Fashion-MNIST): multi-scale VQ tokenizer -> tokens ->
# pretrain per depth -> CCA per depth (main beta/lambda; lambda and beta sweeps on one depth) ->
# samples (guidance-free, CFG over its scale, CCA guidance-free) -> metrics -> table, figures.
# Claims: per depth of replicate_depths, the pretrained model and its CCA at the main beta/lambda
# are re-trained for replicates r = 1..R-1 (files with suffix -r<r>, seeds moved by
# replicate_train / replicate_seed; the tokenizer and tokens are shared), each sampled without
# guidance, after CCA and with CFG at sampling.claim_cfgs; the claims decide over the replicates
# (report/cca_claims.py). Sweeps, table and figures are replicate 0 (single seed). Paper tier: strict checks of the official VAR files, then the paper's protocol from them
# (cca_var_paper.smk, with paper.smk's shared rules).


include: "cca_var_common.smk"


if config["tier"] == "paper" and CV_ON:

    include: "cca_var_paper.smk"


wildcard_constraints:
    depth="[0-9]+",
    beta="[0-9.e+-]+",
    lam="[0-9.e+-]+",
    cfg="[0-9.e+-]+",
    kind="pretrained|cca",
    cca="(-b[0-9.e+-]+-l[0-9.e+-]+)?",
    rep="(-r[0-9]+)?",


rule cca_var_tokenizer:
    input:
        "results/data/fashion_mnist.npz",
    output:
        f"{CV_DIR}/tokenizer.pt",
    log:
        f"{CV_DIR}/logs/tokenizer.log",
    params:
        p=as_json(
            {
                **CV["tokenizer"]["model"],
                "train": {
                    k: v for k, v in CV["tokenizer"]["train"].items() if k != "nproc"
                },
            }
        ),
    shell:
        "guidance-repro train --task msvq-tokenizer --params {params.p}"
        " --input data={input} --out {output} --no-progress > {log} 2>&1"


rule cca_var_encode:
    input:
        tok=f"{CV_DIR}/tokenizer.pt",
        data="results/data/fashion_mnist.npz",
    output:
        f"{CV_DIR}/tokens-train.npz",
    log:
        f"{CV_DIR}/logs/encode.log",
    shell:
        "guidance-repro msvq-encode --tokenizer {input.tok} --data {input.data}"
        " --split train --out {output} > {log} 2>&1"


rule cca_var_reconstruct:
    input:
        tok=f"{CV_DIR}/tokenizer.pt",
        data="results/data/fashion_mnist.npz",
    output:
        f"{CV_DIR}/samples/reconstruction-test.npz",
    log:
        f"{CV_DIR}/logs/reconstruct.log",
    params:
        num=CV_NUM,
    shell:
        "guidance-repro msvq-reconstruct --tokenizer {input.tok} --data {input.data}"
        " --split test --num {params.num} --out {output} > {log} 2>&1"


rule cca_var_pretrain:
    input:
        tok=f"{CV_DIR}/tokenizer.pt",
        codes=f"{CV_DIR}/tokens-train.npz",
    output:
        f"{CV_DIR}/models/d{{depth}}-pretrained{{rep}}.pt",
    log:
        f"{CV_DIR}/logs/pretrain-d{{depth}}{{rep}}.log",
    params:
        p=cv_model_params,
    shell:
        "guidance-repro train --task var-pretrain --params {params.p}"
        " --input codes={input.codes} --input tokenizer={input.tok}"
        " --out {output} --no-progress > {log} 2>&1"


rule cca_var_cca:
    input:
        base=f"{CV_DIR}/models/d{{depth}}-pretrained{{rep}}.pt",
        tok=f"{CV_DIR}/tokenizer.pt",
        codes=f"{CV_DIR}/tokens-train.npz",
    output:
        f"{CV_DIR}/models/d{{depth}}-cca-b{{beta}}-l{{lam}}{{rep}}.pt",
    log:
        f"{CV_DIR}/logs/cca-d{{depth}}-b{{beta}}-l{{lam}}{{rep}}.log",
    params:
        p=cv_cca_params,
    shell:
        "guidance-repro train --task var-cca --params {params.p} --input pretrained={input.base}"
        " --input codes={input.codes} --input tokenizer={input.tok}"
        " --out {output} --no-progress > {log} 2>&1"


rule cca_var_sample:
    input:
        model=cv_sample_model,
        tok=f"{CV_DIR}/tokenizer.pt",
    output:
        f"{CV_DIR}/samples/d{{depth}}-{{kind}}{{cca}}-cfg{{cfg}}{{rep}}.npz",
    log:
        f"{CV_DIR}/logs/sample-d{{depth}}-{{kind}}{{cca}}-cfg{{cfg}}{{rep}}.log",
    params:
        s=CV["sampling"],
        n=CV_NUM,
        seed=cv_sample_seed,
        tags=cv_sample_tags,
        cache=lambda w: "" if CV["sampling"]["use_cache"] else "--no-cache",
    shell:
        "guidance-repro var-sample --model {input.model} --tokenizer {input.tok}"
        " --num {params.n} --cfg {wildcards.cfg} --top-k {params.s[top_k]}"
        " --top-p {params.s[top_p]} --batch-size {params.s[batch_size]} --seed {params.seed}"
        " {params.cache} {params.tags} --no-progress --out {output} > {log} 2>&1"


rule cca_var_table:
    input:
        expand(f"{CV_DIR}/metrics/{{point}}.json", point=cv_points()),
    output:
        f"{CV_DIR}/table.csv",
    log:
        f"{CV_DIR}/logs/table.log",
    shell:
        "guidance-repro cca-table --metrics {input} --out {output} > {log} 2>&1"


rule cca_var_figures:
    input:
        f"{CV_DIR}/table.csv",
    output:
        bars=report(
            f"{CV_DIR}/figures/fig1_bars.png",
            caption="../report/cca_bars.rst",
            category="CCA (VAR)",
        ),
        tradeoff=report(
            f"{CV_DIR}/figures/fig4_tradeoff.png",
            caption="../report/cca_tradeoff.rst",
            category="CCA (VAR)",
        ),
        beta=report(
            f"{CV_DIR}/figures/beta_ablation.png",
            caption="../report/cca_beta.rst",
            category="CCA (VAR)",
        ),
    log:
        f"{CV_DIR}/logs/figures.log",
    shell:
        "guidance-repro cca-figures --table {input} --bars {output.bars}"
        " --tradeoff {output.tradeoff} --beta {output.beta} > {log} 2>&1"


rule cca_var_grid:
    input:
        expand(f"{CV_DIR}/samples/{{point}}.npz", point=cv_grid_points()),
    output:
        report(
            f"{CV_DIR}/figures/samples_grid.png",
            caption="../report/cca_grid.rst",
            category="CCA (VAR)",
        ),
    log:
        f"{CV_DIR}/logs/grid.log",
    params:
        titles=" ".join(cv_grid_points()),
    shell:
        "guidance-repro sample-grid --samples {input} --titles {params.titles}"
        " --out {output} > {log} 2>&1"


rule cca_var_benchmark:
    input:
        model=f"{CV_DIR}/models/{cv_sweep_model()}-pretrained.pt",
        tok=f"{CV_DIR}/tokenizer.pt",
    output:
        f"{CV_DIR}/benchmark_var_sampling.json",
    log:
        f"{CV_DIR}/logs/benchmark.log",
    threads: machine_cores()  # timings need the machine to themselves
    params:
        b=CV["benchmark"],
        script=CV_BENCH_SCRIPT,
        name=cv_sweep_model(),
    shell:
        "guidance-repro var-benchmark --script {params.script} --model {input.model}"
        " --tokenizer {input.tok} --model-name {params.name} --images {params.b[images]}"
        " --batch {params.b[batch]} --repeats {params.b[repeats]} --threads {params.b[threads]}"
        " --out {output} > {log} 2>&1"


rule cca_var_claims:
    input:
        points=expand(f"{CV_DIR}/metrics/{{p}}.json", p=cv_all_claim_points()),
        bench=f"{CV_DIR}/benchmark_var_sampling.json",
        rec=f"{CV_DIR}/metrics/reconstruction-test.json",
        quality="results/evaluators/classifier_quality.json",
    output:
        json=f"{CV_DIR}/claims.json",
        md=f"{CV_DIR}/claims.md",
        csv=f"{CV_DIR}/claims.csv",
    log:
        f"{CV_DIR}/logs/claims.log",
    shell:
        "guidance-repro cca-claims --points {input.points} --benchmark {input.bench}"
        " --reconstruction {input.rec} --evaluator-quality {input.quality} --out {output.json}"
        " --markdown {output.md} --csv {output.csv} > {log} 2>&1"


rule cca_var_check_official:
    input:
        cv_official_files,
    output:
        f"{CV_DIR}/paper/official_checkpoints.json",
    log:
        f"{CV_DIR}/logs/check_official.log",
    params:
        var=lambda w: " ".join(
            f"--var {d}={CV['paper']['var_checkpoints'][str(d)]}" for d in CV["depths"]
        ),
        vae=CV["paper"]["vae_checkpoint"],
        tiny=lambda w: cvp_tiny_width_args(),
    shell:
        "guidance-repro var-check-official {params.var} --vae {params.vae} {params.tiny}"
        " --out {output} > {log} 2>&1"


rule cca_var_mechanism:
    input:
        model=f"{CV_DIR}/models/d{{depth}}-pretrained.pt",
        tok=f"{CV_DIR}/tokenizer.pt",
    output:
        f"{CV_DIR}/mechanism/d{{depth}}.json",
    log:
        f"{CV_DIR}/logs/mechanism-d{{depth}}.log",
    shell:
        "guidance-repro var-mechanism --model {input.model} --tokenizer {input.tok}"
        " --out {output} > {log} 2>&1"


rule cca_var_all:
    input:
        (
            (
                [
                    f"{CV_DIR}/paper/official_checkpoints.json",
                    *paper_outputs("cca_var"),
                ]
                if CV_ON
                else []
            )
            if config["tier"] == "paper"
            else [
                f"{CV_DIR}/metrics/reconstruction-test.json",
                expand(f"{CV_DIR}/mechanism/{{m}}.json", m=cv_models()),
                rules.cca_var_figures.output,
                rules.cca_var_grid.output,
                rules.cca_var_claims.output,
            ]
        ),
