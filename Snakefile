# guidance-repro: one DAG for every tier. The tier is chosen by the config file:
#   snakemake --cores all                       toy tier (config/config.yaml)
#   snakemake --cores all --directory .test     smoke tier (.test/config/config.yaml)
#   snakemake --cores all --configfile config/paper/<name>.yaml   paper tier
from snakemake.utils import min_version

min_version("9.20")


# Here `config` holds only what the command line gave (--configfile / --config). A paper-tier config
# is complete on its own and is used alone: merged over config/config.yaml it would also plan the
# toy sections it leaves out (e.g. cca-llamagen.yaml would train the toy autoguidance models).
# Anything else (no config given, or a partial override of toy keys) goes over the default file.
if config.get("tier") != "paper":

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cluster_common.smk"
include: "workflow/rules/paper_common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/evaluators.smk"
include: "workflow/rules/cca_var.smk"
include: "workflow/rules/cca_llamagen.smk"
include: "workflow/rules/autoguidance.smk"
include: "workflow/rules/star.smk"
include: "workflow/rules/star_mjhq.smk"
include: "workflow/rules/paper.smk"  # after the slices: they register their paper points
include: "workflow/rules/metrics.smk"  # after the slices: it reads their point lists
include: "workflow/rules/report.smk"  # last: it gathers the slices above
include: "workflow/rules/regression.smk"


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
        rules.regression_all.input,


onsuccess:
    write_run_record()
