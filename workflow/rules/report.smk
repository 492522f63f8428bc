# The reviewers' report: the claims table across the three papers (every slice's claims CSV with
# the paper's figure and source beside it) and the cross-method matrix (per family, the best
# point of each guidance method: FID, recall, sampling cost). `snakemake --report` then bundles
# every figure, its caption and these tables into results/report.html (Makefile `reproduce`).


include: "report_common.smk"


rule report_claims:
    input:
        rp_claims_inputs,
    output:
        csv="results/claims.csv",
        md="results/claims.md",
        html=report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Claims and matrix",
        ),
    log:
        "results/logs/report/claims.log",
    params:
        tier=config["tier"],
    shell:
        "guidance-repro claims --tier {params.tier} --slice {input}"
        " --out-csv {output.csv} --out-md {output.md} --out-html {output.html}"
        " > {log} 2>&1"


rule report_matrix:
    input:
        unpack(rp_matrix_inputs),
    output:
        csv="results/matrix.csv",
        md="results/matrix.md",
        html=report(
            "results/matrix.html",
            caption="../report/matrix_table.rst",
            category="Claims and matrix",
        ),
        fig=report(
            "results/figures/matrix.png",
            caption="../report/matrix.rst",
            category="Claims and matrix",
        ),
    log:
        "results/logs/report/matrix.log",
    params:
        args=rp_matrix_args,
    shell:
        "guidance-repro matrix {params.args} --out-csv {output.csv} --out-md {output.md}"
        " --out-figure {output.fig} --out-html {output.html} > {log} 2>&1"


rule report_all:
    input:
        rp_targets(),
