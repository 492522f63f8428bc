# The paper tier's shared rules (helpers: paper_common.smk): per registered slice and point, the
# finished sampling shards -> one ADM-format batch (`merge-shards`: arr_0 uint8 N x 256 x 256 x 3,
# arr_1 labels, readable by the official TF evaluator) -> ADM-protocol metrics (`adm-evaluate`:
# FID/sFID against the reference batch's stored statistics, precision/recall against its arr_0,
# IS in splits) -> the slice's table beside the paper's, Figure 1 bars and claims at tier paper.
# Included after the slices, which register their points.


wildcard_constraints:
    pslice=paper_pattern(PAPER_SLICES),
    ppoint="[A-Za-z0-9.+-]+",


rule paper_merge_shards:
    input:
        lambda w: paper_shards(w.pslice, w.ppoint),
    output:
        batch="results/{pslice}/paper/samples/{ppoint}.npz",
        manifest="results/{pslice}/paper/samples/{ppoint}.json",
    log:
        "results/{pslice}/paper/logs/merge-{ppoint}.log",
    resources:
        **job_resources("evaluation", gpus=0),
    shell:
        "guidance-repro merge-shards --shards {input} --out {output.batch}"
        " --manifest {output.manifest} > {log} 2>&1"


rule paper_evaluate:
    input:
        batch="results/{pslice}/paper/samples/{ppoint}.npz",
        manifest="results/{pslice}/paper/samples/{ppoint}.json",
        reference=lambda w: PAPER_SLICES[w.pslice].reference,
        inception=lambda w: PAPER_SLICES[w.pslice].inception,
    output:
        "results/{pslice}/paper/metrics/{ppoint}.json",
    log:
        "results/{pslice}/paper/logs/evaluate-{ppoint}.log",
    resources:
        **job_resources("evaluation"),
    params:
        args=paper_evaluation_args,
    shell:
        "guidance-repro adm-evaluate --samples {input.batch} --sample-manifest {input.manifest}"
        " --reference {input.reference} --inception {input.inception} {params.args}"
        " --no-progress --out {output} > {log} 2>&1"


rule paper_table:
    input:
        lambda w: paper_metrics(w.pslice),
    output:
        csv="results/{pslice}/paper/table.csv",
        md="results/{pslice}/paper/table.md",
        fig=report(
            "results/{pslice}/paper/figures/fig1.png",
            caption="../report/paper_fig1.rst",
            category="Paper tier",
        ),
        claims="results/{pslice}/paper/claims.csv",
    log:
        "results/{pslice}/paper/logs/table.log",
    params:
        family=lambda w: PAPER_SLICES[w.pslice].family,
        models=lambda w: " ".join(PAPER_SLICES[w.pslice].models),
    shell:
        "guidance-repro cca-paper-table --metrics {input} --family {params.family}"
        " --models {params.models} --out {output.csv} --markdown {output.md}"
        " --figure {output.fig} --claims {output.claims} > {log} 2>&1"
