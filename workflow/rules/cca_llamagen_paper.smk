# CCA on LlamaGen, paper tier (cca.md §1-§3), from the official files named in cca_llamagen.paper:
# ImageNet train -> VQ-16 ten-crop + flip codes (one job per shard, resumable per chunk) -> merged
# codes + manifest -> CCA fine-tune of each size from c2i_<size>_384.pt (policy and frozen
# reference; torchrun, FSDP for XXL/3B; resumable) -> per point, sharded resumable sampling
# (llamagen-sample-shard) -> paper.smk: ADM batch, ADM-protocol metrics, the table beside the
# paper's. Points and their settings: cca_llamagen_paper_common.smk. The mini tier (.test/paper/)
# runs these same rules on TEST STAND-IN files.


include: "cca_llamagen_paper_common.smk"


wildcard_constraints:
    lp_shard="[0-9]+",
    lp_ft=paper_pattern(CLP_FINETUNES),
    lp_point=paper_pattern(CLP_POINTS),


rule cca_llamagen_paper_codes_shard:
    input:
        vq=CLP_CFG["vq_checkpoint"],
    output:
        f"{CLP}/codes/shards/shard-{{lp_shard}}-of-{CLP_CODES['num_shards']:05d}/done.json",
    log:
        f"{CLP}/logs/codes-shard-{{lp_shard}}.log",
    resources:
        **job_resources("sampling"),
    params:
        args=clp_codes_args,
    shell:
        "guidance-repro llamagen-imagenet-codes --vq {input.vq} {params.args}"
        " --shard {wildcards.lp_shard} --out {CLP}/codes/shards > {log} 2>&1"


rule cca_llamagen_paper_codes:
    input:
        clp_code_shards(),
    output:
        manifest=f"{CLP}/codes/manifest.json",
        codes=f"{CLP}/codes/codes.npy",
        labels=f"{CLP}/codes/labels.npy",
        index=f"{CLP}/codes/index.npy",
    log:
        f"{CLP}/logs/codes-merge.log",
    params:
        shards=lambda w, input: " ".join(str(Path(p).parent) for p in input),
    shell:
        "guidance-repro llamagen-merge-codes --shards {params.shards} --out {CLP}/codes > {log} 2>&1"


rule cca_llamagen_paper_finetune:
    input:
        pretrained=lambda w: clp_checkpoint(CLP_FINETUNES[w.lp_ft]["model"]),
        codes=f"{CLP}/codes/manifest.json",
    output:
        model=f"{CLP}/models/{{lp_ft}}.pt",
        official=f"{CLP}/models/{{lp_ft}}.official.pt",
    log:
        f"{CLP}/logs/finetune-{{lp_ft}}.log",
    threads: CLP_FT["nproc"]
    resources:
        **job_resources("finetuning"),
    params:
        launch=paper_launcher("llamagen-cca-official", CLP_FT["nproc"]),
        args=clp_finetune_args,
    shell:
        "{params.launch} --pretrained {input.pretrained} --codes {CLP}/codes {params.args}"
        " --out {output.model} --out-official {output.official} --no-progress > {log} 2>&1"


rule cca_llamagen_paper_sample_shard:
    input:
        model=lambda w: CLP_POINTS[w.lp_point]["model_file"],
        tokenizer=CLP_CFG["vq_checkpoint"],
    output:
        f"{CLP}/samples/{{lp_point}}/shard-{{lp_shard}}-of-{CLP_SAMPLING['num_shards']:03d}.json",
    log:
        f"{CLP}/logs/sample-{{lp_point}}-{{lp_shard}}.log",
    resources:
        **job_resources("sampling"),
    params:
        args=clp_sample_args,
    shell:
        "guidance-repro llamagen-sample-shard --model {input.model} --tokenizer {input.tokenizer}"
        " {params.args} --shard {wildcards.lp_shard} --no-progress --out {output} > {log} 2>&1"


paper_register(
    "cca_llamagen",
    family="llamagen",
    models=[clp_size(m) for m in cl_models()],
    points=CLP_POINTS,
    num_shards=CLP_SAMPLING["num_shards"],
    reference=CLP_CFG["reference_batch"],
    inception=CLP_CFG["inception"],
    sfid_network=CLP_CFG["sfid_network"],
    evaluation=CLP_CFG["evaluation"],
)
