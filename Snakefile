# guidance-repro: one DAG for every tier. The tier is chosen by the config file:
#   snakemake --cores all                       toy tier (config/config.yaml)
#   snakemake --cores all --directory .test     smoke tier (.test/config/config.yaml)
#   snakemake --cores all --configfile config/paper/<name>.yaml   paper tier
from snakemake.utils import min_version

min_version("9.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cluster_common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/evaluators.smk"
include: "workflow/rules/cca_var.smk"
include: "workflow/rules/cca_llamagen.smk"
include: "workflow/rules/autoguidance.smk"
include: "workflow/rules/star.smk"
include: "workflow/rules/star_mjhq.smk"
include: "workflow/rules/metrics.smk"  # after the slices: it reads their point lists
include: "workflow/rules/report.smk"  # last: it gathers the slices above


rule all:
    default_target: True
    input:
        rules.data_all.input,
        rules.evaluators_all.input,
        rules.cca_var_all.input,
        rules.cca_llamagen_all.input,
        rules.autoguidance_all.input,
        rules.star_all.input,
        rules.report_all.input,


onsuccess:
    write_run_record()
