# CCA on VAR, paper tier (cca.md §1-§3), from the official files named in cca_var.paper: a
# one-epoch CCA fine-tune of each depth from var_d<depth>.pth (policy and frozen reference;
# ImageNet encoded on the fly by the official VQVAE; torchrun; resumable) -> per point (w/o
# guidance, CFG, CCA, and CCA+CFG where configured) sharded resumable sampling (var-sample-shard)
# -> paper.smk: ADM batch, ADM-protocol metrics, the table beside the paper's. The mini tier
# (.test/paper/) runs these same rules on TEST STAND-IN files.


include: "cca_var_paper_common.smk"


wildcard_constraints:
    vp_shard="[0-9]+",
    vp_ft=paper_pattern(CVP_FINETUNES),
    vp_point=paper_pattern(CVP_POINTS),


rule cca_var_paper_finetune:
    input:
        pretrained=lambda w: cvp_checkpoint(CVP_FINETUNES[w.vp_ft]["model"]),
        vae=CVP_CFG["vae_checkpoint"],
    output:
        model=f"{CVP}/models/{{vp_ft}}.pt",
        official=f"{CVP}/models/{{vp_ft}}.official.pth",
    log:
        f"{CVP}/logs/finetune-{{vp_ft}}.log",
    threads: CVP_FT["nproc"]
    resources:
        **job_resources("finetuning"),
    params:
        launch=paper_launcher("var-cca-official", CVP_FT["nproc"]),
        args=cvp_finetune_args,
    shell:
        "{params.launch} --pretrained {input.pretrained} --vae {input.vae} {params.args}"
        " --out {output.model} --out-official {output.official} --no-progress > {log} 2>&1"


rule cca_var_paper_sample_shard:
    input:
        model=lambda w: CVP_POINTS[w.vp_point]["model_file"],
        vae=CVP_CFG["vae_checkpoint"],
    output:
        f"{CVP}/samples/{{vp_point}}/shard-{{vp_shard}}-of-{CVP_SAMPLING['num_shards']:03d}.json",
    log:
        f"{CVP}/logs/sample-{{vp_point}}-{{vp_shard}}.log",
    resources:
        **job_resources("sampling"),
    params:
        args=cvp_sample_args,
    shell:
        "guidance-repro var-sample-shard --model {input.model} --vae {input.vae} {params.args}"
        " --shard {wildcards.vp_shard} --no-progress --out {output} > {log} 2>&1"


paper_register(
    "cca_var",
    family="var",
    models=[f"d{d}" for d in CV["depths"]],
    points=CVP_POINTS,
    num_shards=CVP_SAMPLING["num_shards"],
    reference=CVP_CFG["reference_batch"],
    inception=CVP_CFG["inception"],
    sfid_network=CVP_CFG["sfid_network"],
    evaluation=CVP_CFG["evaluation"],
)
