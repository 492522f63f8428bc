# STAR paper tier: MJHQ-30K with STAR's official weights. Rule star_mjhq_sample draws one image per
# prompt (star-mjhq-sample: star/official.py + var/vqvae.py, SD-2.1 text encoder, GPU)
# into results/star/paper/mjhq/generated_images/<category>/<key>.png, resumably: a killed job
# keeps its PNGs (they are not a declared output) and the rerun draws only the missing ones; the
# declared output is the manifest written when every prompt has its image. With
# star.paper.generated_dir set, images made elsewhere are evaluated instead and nothing is sampled.
# Evaluation (metrics/mjhq_eval.py), per category: pack the images, features of the references
# resized to the generation resolution, FID features + CLIP cosines, ImageReward (isolated
# environment); then one table over the ten categories.


rule star_mjhq_sample:
    output:
        f"{ST_MJHQ_SAMPLED}/manifest.json",
    log:
        f"{ST_MJHQ}/logs/sample.log",
    benchmark:
        f"{ST_MJHQ}/benchmarks/sample.tsv"
    resources:
        **job_resources(
            "sampling", gpus=1 if ST_PAPER["device"].startswith("cuda") else 0
        ),
    params:
        star=lambda w: st_paper_file("star.paper.star_checkpoint"),
        vae=lambda w: st_paper_file("star.paper.vae_checkpoint"),
        text=lambda w: st_paper_file("star.paper.text_encoder_dir"),
        meta=lambda w: st_paper_file("star.paper.mjhq_meta"),
        out=lambda w, output: Path(output[0]).parent,
        pn=lambda w: st_sample_schedule(),
        p=ST_PAPER,
        seed=config["seed"],
    shell:
        "guidance-repro star-mjhq-sample --star {params.star:q} --vae {params.vae:q}"
        " --text-encoder {params.text:q} --meta {params.meta:q} --out-dir {params.out:q}"
        " --resolution {params.p[resolution]} {params.pn} --rope-norm {params.p[rope_norm]}"
        " --rope-theta {params.p[rope_theta]} --qk-scale-clamp {params.p[qk_scale_clamp]}"
        " --cfg {params.p[cfg]} --top-k {params.p[top_k]}"
        " --top-p {params.p[top_p]} --batch-size {params.p[sample_batch_size]}"
        " --seed {params.seed} --device {params.p[device]}"
        " --precision {params.p[precision]} > {log} 2>&1"


rule star_mjhq_pack:
    input:
        lambda w: st_generated_marker(),
    output:
        temp(f"{ST_MJHQ}/generated/{{category}}.npz"),
    log:
        f"{ST_MJHQ}/logs/pack-{{category}}.log",
    params:
        gen=lambda w: st_generated_dir(),
        meta=lambda w: st_paper_file("star.paper.mjhq_meta"),
        res=ST_PAPER["resolution"],
    shell:
        "guidance-repro mjhq-pack --generated {params.gen:q} --meta {params.meta:q}"
        " --category {wildcards.category} --resolution {params.res} --out {output} > {log} 2>&1"


rule star_mjhq_reference:
    output:
        f"{ST_MJHQ}/reference/{{category}}.npz",
    log:
        f"{ST_MJHQ}/logs/reference-{{category}}.log",
    params:
        meta=lambda w: st_paper_file("star.paper.mjhq_meta"),
        images=lambda w: st_paper_file("star.paper.mjhq_images"),
        res=ST_PAPER["resolution"],
        ev=lambda w: st_extractor_args(),
        device=ST_PAPER["device"],
    shell:
        "guidance-repro mjhq-reference --meta {params.meta:q} --images {params.images:q}"
        " --category {wildcards.category} --resolution {params.res} {params.ev}"
        " --device {params.device} --no-progress --out {output} > {log} 2>&1"


rule star_mjhq_features:
    input:
        f"{ST_MJHQ}/generated/{{category}}.npz",
    output:
        f"{ST_MJHQ}/features/{{category}}.npz",
    log:
        f"{ST_MJHQ}/logs/features-{{category}}.log",
    resources:
        **job_resources("evaluation"),
    params:
        ev=lambda w: st_extractor_args(),
        clip=lambda w: st_paper_file("evaluation.clip.weights"),
        model=ST_PAPER["clip_model"],
        device=ST_PAPER["device"],
    shell:
        "guidance-repro mjhq-features --samples {input} --clip-model {params.model}"
        " --clip-weights {params.clip:q} {params.ev} --device {params.device}"
        " --out {output} > {log} 2>&1"


rule star_mjhq_imagereward:
    input:
        f"{ST_MJHQ}/generated/{{category}}.npz",
    output:
        f"{ST_MJHQ}/imagereward/{{category}}.json",
    log:
        f"{ST_MJHQ}/logs/imagereward-{{category}}.log",
    resources:
        **job_resources("evaluation"),
    params:
        ir=lambda w: st_imagereward_args(),
        device=ST_PAPER["device"],
    shell:
        "guidance-repro imagereward --samples {input} {params.ir} --device {params.device}"
        " --out {output} > {log} 2>&1"


rule star_mjhq_table:
    input:
        ref=expand(f"{ST_MJHQ}/reference/{{c}}.npz", c=ST_MJHQ_CATEGORIES),
        feat=expand(f"{ST_MJHQ}/features/{{c}}.npz", c=ST_MJHQ_CATEGORIES),
        ir=expand(f"{ST_MJHQ}/imagereward/{{c}}.json", c=ST_MJHQ_CATEGORIES),
    output:
        json=f"{ST_MJHQ}/mjhq.json",
        md=f"{ST_MJHQ}/mjhq.md",
        csv=f"{ST_MJHQ}/mjhq.csv",
        fig=f"{ST_MJHQ}/mjhq_fid.png",
    log:
        f"{ST_MJHQ}/logs/table.log",
    shell:
        "guidance-repro mjhq-table --reference {input.ref} --features {input.feat}"
        " --imagereward {input.ir} --out {output.json} --markdown {output.md}"
        " --csv {output.csv} --figure {output.fig} > {log} 2>&1"
