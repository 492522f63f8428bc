# CCA on LlamaGen-style next-token AR (toy tier: Fashion-MNIST): VQ tokenizer -> codes (once) ->
# pretrain per model size -> CCA per size (main beta/lambda; lambda and beta sweeps, DPO and
# unlearning baselines on one size) -> samples (guidance-free, CFG over its scale s, CCA
# guidance-free, CCA+CFG; autoguidance with a small, short-trained guide GPT for the cross-method
# matrix) -> metrics -> table, figures; tokenizer reconstruction FID; the sampling benchmark.
# Claims: per size, the pretrained model and its CCA at the main beta/lambda are re-trained for
# replicates r = 1..R-1 (files with suffix -r<r>, seeds moved by replicate_train / replicate_seed;
# the tokenizer and codes are shared), each sampled without guidance, after CCA and with CFG at
# sampling.claim_cfgs; the claims decide over the R replicates (report/cca_claims.py). The sweeps,
# table and figures are replicate 0 (single seed). Paper tier: strict checks of the official LlamaGen files, then the paper's
# protocol from them (cca_llamagen_paper.smk, with paper.smk's shared rules).


include: "cca_llamagen_common.smk"


if config["tier"] == "paper" and CL_ON:

    include: "cca_llamagen_paper.smk"


wildcard_constraints:
    lg_model="[A-Za-z0-9]+",
    lg_kind="pretrained|cca|dpo|unlearning",
    lg_method="cca|dpo|unlearning",
    lg_ft="(-b[0-9.e+-]+-l[0-9.e+-]+)?",
    lg_beta="[0-9.e+-]+",
    lg_lam="[0-9.e+-]+",
    lg_cfg="[0-9.e+]+",
    lg_rep="(-r[0-9]+)?",
    lg_w="[0-9.e+]+",


rule cca_llamagen_tokenizer:
    input:
        "results/data/fashion_mnist.npz",
    output:
        f"{CL_DIR}/tokenizer.pt",
    log:
        f"{CL_DIR}/logs/tokenizer.log",
    params:
        p=as_json({**CL["tokenizer"]["model"], "train": cl_train(CL["tokenizer"])}),
    shell:
        "guidance-repro train --task vq-tokenizer --params {params.p}"
        " --input data={input} --out {output} --no-progress > {log} 2>&1"


rule cca_llamagen_encode:
    input:
        tok=f"{CL_DIR}/tokenizer.pt",
        data="results/data/fashion_mnist.npz",
    output:
        f"{CL_DIR}/codes-train.npz",
    log:
        f"{CL_DIR}/logs/encode.log",
    shell:
        "guidance-repro encode-codes --tokenizer {input.tok} --data {input.data}"
        " --split train --out {output} > {log} 2>&1"


rule cca_llamagen_reconstruct:
    input:
        tok=f"{CL_DIR}/tokenizer.pt",
        data="results/data/fashion_mnist.npz",
    output:
        f"{CL_DIR}/samples/reconstruction-test.npz",
    log:
        f"{CL_DIR}/logs/reconstruct.log",
    shell:
        "guidance-repro vq-reconstruct --tokenizer {input.tok} --data {input.data}"
        " --split test --out {output} > {log} 2>&1"


rule cca_llamagen_pretrain:
    input:
        f"{CL_DIR}/codes-train.npz",
    output:
        f"{CL_DIR}/models/{{lg_model}}-pretrained{{lg_rep}}.pt",
    log:
        f"{CL_DIR}/logs/pretrain-{{lg_model}}{{lg_rep}}.log",
    resources:
        **job_resources("training"),
    params:
        p=cl_pretrain_params,
        launch=train_launcher(CL["pretrain"], "training"),
    shell:
        "{params.launch} --task llamagen-pretrain --params {params.p}"
        " --input codes={input} --out {output} --no-progress > {log} 2>&1"


rule cca_llamagen_reference_logp:
    input:
        base=f"{CL_DIR}/models/{{lg_model}}-pretrained.pt",
        codes=f"{CL_DIR}/codes-train.npz",
    output:
        f"{CL_DIR}/models/{{lg_model}}-reference-logp.npz",
    log:
        f"{CL_DIR}/logs/reference-logp-{{lg_model}}.log",
    params:
        p=cl_reference_params,
    shell:
        "guidance-repro cca-reference-logp --params {params.p} --input pretrained={input.base}"
        " --input codes={input.codes} --out {output} --no-progress > {log} 2>&1"


rule cca_llamagen_finetune:
    input:
        unpack(cl_finetune_inputs),
    output:
        f"{CL_DIR}/models/{{lg_model}}-{{lg_method}}-b{{lg_beta}}-l{{lg_lam}}{{lg_rep}}.pt",
    log:
        f"{CL_DIR}/logs/finetune-{{lg_model}}-{{lg_method}}-b{{lg_beta}}-l{{lg_lam}}{{lg_rep}}.log",
    resources:
        **job_resources("finetuning"),
    params:
        p=cl_finetune_params,
        launch=train_launcher(CL["cca"], "finetuning"),
        ref=cl_reference_arg,
    shell:
        "{params.launch} --task llamagen-cca --params {params.p} --input pretrained={input.base}"
        " --input codes={input.codes}{params.ref} --out {output} --no-progress > {log} 2>&1"


rule cca_llamagen_sample:
    input:
        model=cl_sample_model,
        tok=f"{CL_DIR}/tokenizer.pt",
    output:
        f"{CL_DIR}/samples/{{lg_model}}-{{lg_kind}}{{lg_ft}}-cfg{{lg_cfg}}{{lg_rep}}.npz",
    log:
        f"{CL_DIR}/logs/sample-{{lg_model}}-{{lg_kind}}{{lg_ft}}-cfg{{lg_cfg}}{{lg_rep}}.log",
    resources:
        **job_resources("sampling"),
    params:
        s=CL["sampling"],
        n=CL_NUM,
        seed=cl_sample_seed,
        tags=cl_sample_tags,
        cache=lambda w: "" if CL["sampling"]["method"] == "kv-cache" else "--no-cache",
    shell:
        "guidance-repro sample-ar --model {input.model} --tokenizer {input.tok}"
        " --num {params.n} --cfg {wildcards.lg_cfg} --top-k {params.s[top_k]}"
        " --top-p {params.s[top_p]} --temperature {params.s[temperature]}"
        " --batch-size {params.s[batch_size]} --seed {params.seed} {params.cache}"
        " {params.tags} --no-progress --out {output} > {log} 2>&1"


rule cca_llamagen_autoguide:
    input:
        f"{CL_DIR}/codes-train.npz",
    output:
        f"{CL_DIR}/models/{{lg_model}}-autoguide.pt",
    log:
        f"{CL_DIR}/logs/autoguide-{{lg_model}}.log",
    resources:
        **job_resources("training"),
    params:
        p=cl_autoguide_params,
        launch=train_launcher(CL["autoguide"], "training"),
    shell:
        "{params.launch} --task llamagen-pretrain --params {params.p}"
        " --input codes={input} --out {output} --no-progress > {log} 2>&1"


rule cca_llamagen_sample_autoguidance:
    input:
        model=f"{CL_DIR}/models/{{lg_model}}-pretrained.pt",
        guide=f"{CL_DIR}/models/{{lg_model}}-autoguide.pt",
        tok=f"{CL_DIR}/tokenizer.pt",
    output:
        f"{CL_DIR}/samples/{{lg_model}}-autoguidance-w{{lg_w}}.npz",
    log:
        f"{CL_DIR}/logs/sample-{{lg_model}}-autoguidance-w{{lg_w}}.log",
    params:
        s=CL["sampling"],
        n=CL_NUM,
        seed=CL_EVAL["seed"],
        cache=lambda w: "" if CL["sampling"]["method"] == "kv-cache" else "--no-cache",
    shell:
        "guidance-repro sample-ar --model {input.model} --tokenizer {input.tok}"
        " --guide {input.guide} --w {wildcards.lg_w} --num {params.n}"
        " --top-k {params.s[top_k]} --top-p {params.s[top_p]}"
        " --temperature {params.s[temperature]} --batch-size {params.s[batch_size]}"
        " --seed {params.seed} {params.cache} --tag model={wildcards.lg_model}"
        " --tag method=autoguidance --no-progress --out {output} > {log} 2>&1"


rule cca_llamagen_table:
    input:
        expand(f"{CL_DIR}/metrics/{{point}}.json", point=cl_points()),
    output:
        f"{CL_DIR}/table.csv",
    log:
        f"{CL_DIR}/logs/table.log",
    shell:
        "guidance-repro cca-table --metrics {input} --out {output} > {log} 2>&1"


rule cca_llamagen_figures:
    input:
        f"{CL_DIR}/table.csv",
    output:
        bars=report(
            f"{CL_DIR}/figures/fig1_bars.png",
            caption="../report/cca_bars.rst",
            category="CCA (LlamaGen)",
        ),
        tradeoff=report(
            f"{CL_DIR}/figures/fig4_tradeoff.png",
            caption="../report/cca_tradeoff.rst",
            category="CCA (LlamaGen)",
        ),
        beta=report(
            f"{CL_DIR}/figures/beta_ablation.png",
            caption="../report/cca_beta.rst",
            category="CCA (LlamaGen)",
        ),
    log:
        f"{CL_DIR}/logs/figures.log",
    shell:
        "guidance-repro cca-figures --table {input} --bars {output.bars}"
        " --tradeoff {output.tradeoff} --beta {output.beta} > {log} 2>&1"


rule cca_llamagen_grid:
    input:
        expand(f"{CL_DIR}/samples/{{point}}.npz", point=cl_grid_points()),
    output:
        report(
            f"{CL_DIR}/figures/samples_grid.png",
            caption="../report/cca_grid.rst",
            category="CCA (LlamaGen)",
        ),
    log:
        f"{CL_DIR}/logs/grid.log",
    params:
        titles=" ".join(cl_grid_points()),
    shell:
        "guidance-repro sample-grid --samples {input} --titles {params.titles}"
        " --out {output} > {log} 2>&1"


rule cca_llamagen_benchmark:
    input:
        f"{CL_DIR}/models/{cl_sweep_model()}-pretrained.pt",
    output:
        f"{CL_DIR}/benchmark_ar_sampling.json",
    log:
        f"{CL_DIR}/logs/benchmark.log",
    threads: machine_cores()  # timings need the machine to themselves
    params:
        b=CL["benchmark"],
        script=CL_BENCH_SCRIPT,
        name=cl_sweep_model(),
    shell:
        "guidance-repro ar-benchmark --script {params.script} --model {input}"
        " --model-name {params.name} --images {params.b[images]} --batch {params.b[batch]}"
        " --cfg-scale {params.b[cfg_scale]} --long-images {params.b[long_images]}"
        " --repeats {params.b[repeats]} --threads {params.b[threads]}"
        " --out {output} > {log} 2>&1"


rule cca_llamagen_claims:
    input:
        points=expand(f"{CL_DIR}/metrics/{{p}}.json", p=cl_all_claim_points()),
        bench=f"{CL_DIR}/benchmark_ar_sampling.json",
        rec=f"{CL_DIR}/metrics/reconstruction-test.json",
        quality="results/evaluators/classifier_quality.json",
    output:
        json=f"{CL_DIR}/claims.json",
        md=f"{CL_DIR}/claims.md",
        csv=f"{CL_DIR}/claims.csv",
    log:
        f"{CL_DIR}/logs/claims.log",
    shell:
        "guidance-repro cca-claims --points {input.points} --benchmark {input.bench}"
        " --reconstruction {input.rec} --evaluator-quality {input.quality} --out {output.json}"
        " --markdown {output.md} --csv {output.csv} > {log} 2>&1"


rule cca_llamagen_check_official:
    input:
        cl_official_files,
    output:
        f"{CL_DIR}/paper/official_checkpoints.json",
    log:
        f"{CL_DIR}/logs/check_official.log",
    params:
        gpt=lambda w: " ".join(
            f"--gpt {cl_spec(m).get('size', m)}={CL['paper']['gpt_checkpoints'][m]}"
            for m in cl_models()
        ),
        vq=CL["paper"]["vq_checkpoint"],
        size=CL["paper"]["image_size"],
        tiny=lambda w: cl_tiny_width_args(),
    shell:
        "guidance-repro llamagen-check-official {params.gpt} --vq {params.vq}"
        " --image-size {params.size} {params.tiny} --out {output} > {log} 2>&1"


rule cca_llamagen_mechanism:
    input:
        model=f"{CL_DIR}/models/{{lg_model}}-pretrained.pt",
        codes=f"{CL_DIR}/codes-train.npz",
        tok=f"{CL_DIR}/tokenizer.pt",
        data="results/data/fashion_mnist.npz",
    output:
        f"{CL_DIR}/mechanism/{{lg_model}}.json",
    log:
        f"{CL_DIR}/logs/mechanism-{{lg_model}}.log",
    params:
        b0=lambda w: cl_main()[0],
        l0=lambda w: cl_main()[1],
        mode=CL["cca"]["beta_mode"],
    shell:
        "guidance-repro llamagen-mechanism --pretrained {input.model} --input train_codes={input.codes}"
        " --input data={input.data} --input tokenizer={input.tok} --beta {params.b0} --lam {params.l0}"
        " --beta-mode {params.mode} --out {output} > {log} 2>&1"


rule cca_llamagen_all:
    input:
        (
            []
            if not CL_ON
            else (
                [
                    f"{CL_DIR}/paper/official_checkpoints.json",
                    *paper_outputs("cca_llamagen"),
                ]
                if config["tier"] == "paper"
                else [
                    f"{CL_DIR}/metrics/reconstruction-test.json",
                    expand(f"{CL_DIR}/mechanism/{{m}}.json", m=cl_models()),
                    rules.cca_llamagen_figures.output,
                    rules.cca_llamagen_grid.output,
                    rules.cca_llamagen_claims.output,
                ]
            )
        ),
