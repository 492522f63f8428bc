# STAR paper tier: MJHQ-30K evaluation of STAR's generated images (metrics/mjhq_eval.py), one
# image per prompt in star.paper.generated_dir/<category>/<key>.png. Per category: pack the images,
# features of the references resized to the generation resolution, FID features + CLIP cosines,
# ImageReward (isolated environment); then one table over the ten categories.


rule star_mjhq_pack:
    output:
        temp(f"{ST_MJHQ}/generated/{{category}}.npz"),
    log:
        f"{ST_MJHQ}/logs/pack-{{category}}.log",
    params:
        gen=lambda w: st_paper_file("star.paper.generated_dir"),
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
