# Toy STAR (text-to-image scale-wise AR with normalized 2-D RoPE) on the captioned compositions:
# frozen text encoder (a small CLIP on the train split, never the judge) + multi-scale VQ ->
# tokens at 16 px and 32 px -> pretrain at 16 px (RoPE and, as the ablation, learned absolute
# positions) -> resolution step: fine-tune at 32 px -> CCA for text -> samples (one per eval
# caption; CFG sweep, CCA over lambda, the ablation) -> metrics (FID via `star_evaluate`, CLIP score
# and per-category FID) -> table, figures, claims.


include: "star_common.smk"


wildcard_constraints:
    pos="rope|absolute",
    steps="[0-9]+",
    res="low|high",
    stcca="(-cca-b[0-9.e+-]+-l[0-9.e+-]+)?",
    rep="(-r[1-9][0-9]*)?",


rule star_text_encoder:
    input:
        "results/data/compositions.npz",
    output:
        f"{ST_DIR}/text_encoder.pt",
    log:
        f"{ST_DIR}/logs/text_encoder.log",
    benchmark:
        f"{ST_DIR}/benchmarks/text_encoder.tsv"
    params:
        p=as_json(
            {
                "model": ST["text_encoder"]["model"],
                "split": ST["text_encoder"]["split"],
                "train": st_train_section(ST["text_encoder"]),
            }
        ),
    shell:
        "guidance-repro train --task star-text-encoder --params {params.p}"
        " --input data={input} --out {output} --no-progress > {log} 2>&1"


rule star_tokenizer:
    input:
        "results/data/compositions.npz",
    output:
        f"{ST_DIR}/tokenizer.pt",
    log:
        f"{ST_DIR}/logs/tokenizer.log",
    benchmark:
        f"{ST_DIR}/benchmarks/tokenizer.tsv"
    params:
        p=as_json(
            {
                **ST["tokenizer"]["model"],
                "patch_nums": ST["high"]["patch_nums"],
                "in_channels": 3,
                "image_size": ST["high"]["image_size"],
                "train": st_train_section(ST["tokenizer"]),
            }
        ),
    shell:
        "guidance-repro train --task msvq-tokenizer --params {params.p}"
        " --input data={input} --out {output} --no-progress > {log} 2>&1"


rule star_encode:
    input:
        tok=f"{ST_DIR}/tokenizer.pt",
        data="results/data/compositions.npz",
    output:
        f"{ST_DIR}/tokens-{{res}}.npz",
    log:
        f"{ST_DIR}/logs/encode-{{res}}.log",
    benchmark:
        f"{ST_DIR}/benchmarks/encode-{{res}}.tsv"
    params:
        r=st_res,
        pn=lambda w: ",".join(str(p) for p in ST[w.res]["patch_nums"]),
    shell:
        "guidance-repro star-encode --tokenizer {input.tok} --data {input.data} --split train"
        " --image-size {params.r[image_size]} --patch-nums {params.pn}"
        " --out {output} > {log} 2>&1"


rule star_pretrain:
    input:
        tok=f"{ST_DIR}/tokenizer.pt",
        codes=f"{ST_DIR}/tokens-low.npz",
        text=f"{ST_DIR}/text_encoder.pt",
    output:
        f"{ST_DIR}/models/{{pos}}-low{{rep}}.pt",
    log:
        f"{ST_DIR}/logs/pretrain-{{pos}}{{rep}}.log",
    benchmark:
        f"{ST_DIR}/benchmarks/pretrain-{{pos}}{{rep}}.tsv"
    params:
        p=st_pretrain_params,
    shell:
        "guidance-repro train --task star-train --params {params.p} --input codes={input.codes}"
        " --input tokenizer={input.tok} --input text_encoder={input.text}"
        " --out {output} --no-progress > {log} 2>&1"


rule star_finetune:
    input:
        init=f"{ST_DIR}/models/{{pos}}-low{{rep}}.pt",
        tok=f"{ST_DIR}/tokenizer.pt",
        codes=f"{ST_DIR}/tokens-high.npz",
        text=f"{ST_DIR}/text_encoder.pt",
    output:
        f"{ST_DIR}/models/{{pos}}-ft{{steps}}{{rep}}.pt",
    log:
        f"{ST_DIR}/logs/finetune-{{pos}}-{{steps}}{{rep}}.log",
    benchmark:
        f"{ST_DIR}/benchmarks/finetune-{{pos}}-{{steps}}{{rep}}.tsv"
    params:
        p=st_finetune_params,
    shell:
        "guidance-repro train --task star-train --params {params.p} --input init={input.init}"
        " --input codes={input.codes} --input tokenizer={input.tok} --input text_encoder={input.text}"
        " --out {output} --no-progress > {log} 2>&1"


rule star_cca:
    input:
        base=f"{ST_DIR}/models/rope-ft{{steps}}{{rep}}.pt",
        tok=f"{ST_DIR}/tokenizer.pt",
        codes=f"{ST_DIR}/tokens-high.npz",
        text=f"{ST_DIR}/text_encoder.pt",
    output:
        f"{ST_DIR}/models/rope-ft{{steps}}-cca-b{{beta}}-l{{lam}}{{rep}}.pt",
    log:
        f"{ST_DIR}/logs/cca-{{steps}}-b{{beta}}-l{{lam}}{{rep}}.log",
    benchmark:
        f"{ST_DIR}/benchmarks/cca-{{steps}}-b{{beta}}-l{{lam}}{{rep}}.tsv"
    params:
        p=st_cca_params,
    shell:
        "guidance-repro train --task star-cca --params {params.p} --input pretrained={input.base}"
        " --input codes={input.codes} --input tokenizer={input.tok} --input text_encoder={input.text}"
        " --out {output} --no-progress > {log} 2>&1"


# One sampling job per replicate, all its points in one process (starting Python with torch and
# the text encoder costs more than sampling a 500-image point).
for _r in replicate_ids(replicate_count(ST)):

    rule:
        name:
            f"star_sample{replicate_suffix(_r).replace('-', '_')}"
        input:
            models=sorted({p["model"] for p in st_sample_points(_r)}),
            tok=f"{ST_DIR}/tokenizer.pt",
            text=f"{ST_DIR}/text_encoder.pt",
            data="results/data/compositions.npz",
        output:
            [p["out"] for p in st_sample_points(_r)],
        log:
            f"{ST_DIR}/logs/sample{replicate_suffix(_r)}.log",
        benchmark:
            f"{ST_DIR}/benchmarks/sample{replicate_suffix(_r)}.tsv"
        params:
            s=ST["sampling"],
            points=as_json(st_sample_points(_r)),
        shell:
            "guidance-repro star-sample --points {params.points} --tokenizer {input.tok}"
            " --text-encoder {input.text} --data {input.data} --split eval --num {params.s[num_samples]}"
            " --top-k {params.s[top_k]} --top-p {params.s[top_p]}"
            " --batch-size {params.s[batch_size]} --no-progress > {log} 2>&1"


# The floors of every FID of the slice, evaluated like the points (same evaluator, reference and
# sample count): real train images, and the tokenizer's reconstructions of the same images.
rule star_floor:
    input:
        tok=f"{ST_DIR}/tokenizer.pt",
        data="results/data/compositions.npz",
    output:
        data=f"{ST_DIR}/samples/data-train.npz",
        rec=f"{ST_DIR}/samples/reconstruction-train.npz",
    log:
        f"{ST_DIR}/logs/floor.log",
    benchmark:
        f"{ST_DIR}/benchmarks/floor.tsv"
    params:
        num=ST["sampling"]["num_samples"],
    shell:
        "guidance-repro star-floor --tokenizer {input.tok} --data {input.data} --split train"
        " --num {params.num} --data-out {output.data} --reconstruction-out {output.rec}"
        " > {log} 2>&1"


# All points in one process, as the evaluation (metrics.smk): a point takes about a second, a
# process that loads the judge CLIP (open_clip) and the reference features about 8.
rule star_scores:
    input:
        samples=expand(f"{ST_DIR}/samples/{{point}}.npz", point=st_points()),
        judge="results/evaluators/judge_clip.pt",
        evaluator="results/evaluators/composition.pt",
        data="results/data/compositions.npz",
    output:
        expand(f"{ST_DIR}/scores/{{point}}.json", point=st_points()),
    log:
        f"{ST_DIR}/logs/scores.log",
    benchmark:
        f"{ST_DIR}/benchmarks/scores.tsv"
    shell:
        "guidance-repro star-scores --samples {input.samples} --judge {input.judge}"
        " --evaluator {input.evaluator} --data {input.data} --split eval"
        " --out {output} > {log} 2>&1"


rule star_table:
    input:
        metrics=expand(f"{ST_DIR}/metrics/{{point}}.json", point=st_points()),
        scores=expand(f"{ST_DIR}/scores/{{point}}.json", point=st_points()),
    output:
        f"{ST_DIR}/table.csv",
    log:
        f"{ST_DIR}/logs/table.log",
    benchmark:
        f"{ST_DIR}/benchmarks/table.tsv"
    shell:
        "guidance-repro star-table --metrics {input.metrics} --scores {input.scores}"
        " --out {output} > {log} 2>&1"


rule star_figures:
    input:
        f"{ST_DIR}/table.csv",
    output:
        clip_fid=report(
            f"{ST_DIR}/figures/clip_fid.png",
            caption="../report/star.rst",
            category="STAR",
        ),
        category=report(
            f"{ST_DIR}/figures/category_fid.png",
            caption="../report/star_category.rst",
            category="STAR",
        ),
        rope=report(
            f"{ST_DIR}/figures/rope_ablation.png",
            caption="../report/star_rope.rst",
            category="STAR",
        ),
    log:
        f"{ST_DIR}/logs/figures.log",
    benchmark:
        f"{ST_DIR}/benchmarks/figures.tsv"
    shell:
        "guidance-repro star-figures --table {input} --clip-fid {output.clip_fid}"
        " --category {output.category} --rope {output.rope} > {log} 2>&1"


rule star_grid:
    input:
        expand(f"{ST_DIR}/samples/{{point}}.npz", point=st_grid_points()),
    output:
        report(
            f"{ST_DIR}/figures/samples_grid.png",
            caption="../report/star_grid.rst",
            category="STAR",
        ),
    log:
        f"{ST_DIR}/logs/grid.log",
    benchmark:
        f"{ST_DIR}/benchmarks/grid.tsv"
    params:
        titles=" ".join(st_grid_points()),
    shell:
        "guidance-repro star-grid --samples {input} --titles {params.titles}"
        " --out {output} > {log} 2>&1"


rule star_claims:
    input:
        f"{ST_DIR}/table.csv",
    output:
        csv=f"{ST_DIR}/claims.csv",
        md=f"{ST_DIR}/claims.md",
    log:
        f"{ST_DIR}/logs/claims.log",
    benchmark:
        f"{ST_DIR}/benchmarks/claims.tsv"
    params:
        cfg=st_claim_cfg(),
        lam=st_cca_points()[0][1],
    shell:
        "guidance-repro star-claims --table {input} --csv {output.csv}"
        " --markdown {output.md} --claim-cfg {params.cfg} --claim-lam {params.lam} > {log} 2>&1"


rule star_check_paper:
    output:
        f"{ST_DIR}/paper/checked.json",
    log:
        f"{ST_DIR}/logs/check_paper.log",
    benchmark:
        f"{ST_DIR}/benchmarks/check_paper.tsv"
    params:
        p=ST["paper"],
    shell:
        "guidance-repro star-check-paper --text-encoder {params.p[text_encoder_dir]:q}"
        " --star {params.p[star_checkpoint]:q} --vae {params.p[vae_checkpoint]:q}"
        " --meta {params.p[mjhq_meta]:q} --images {params.p[mjhq_images]:q}"
        " --out {output} > {log} 2>&1"


rule star_mechanism:
    input:
        rope=f"{ST_DIR}/models/rope-low.pt",
        absolute=f"{ST_DIR}/models/absolute-low.pt",
        codes=f"{ST_DIR}/tokens-low.npz",
        tok=f"{ST_DIR}/tokenizer.pt",
        text=f"{ST_DIR}/text_encoder.pt",
    output:
        f"{ST_DIR}/mechanism/rope.json",
    log:
        f"{ST_DIR}/logs/mechanism.log",
    shell:
        "guidance-repro star-mechanism --model {input.rope} --absolute {input.absolute}"
        " --codes {input.codes} --tokenizer {input.tok} --text-encoder {input.text}"
        " --out {output} > {log} 2>&1"


rule star_all:
    input:
        (
            []
            if not ST_ON
            else (
                st_paper_targets()
                if config["tier"] == "paper"
                else [
                    rules.star_mechanism.output,
                    rules.star_figures.output,
                    rules.star_grid.output,
                    rules.star_claims.output,
                ]
            )
        ),
