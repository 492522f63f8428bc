# Shared helpers of the DAG: config validation, the command prefix, parameter passing, input
# functions. No rules here (snakemake-workflow-template convention).
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from guidance_repro.config_schema import first_error
from guidance_repro import replicates

# The entry point of the schema; each slice's section is in its own file beside it.
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"


def check_config(cfg):
    """Validate with a one-line message naming the key, then let Snakemake fill the defaults."""
    error = first_error(cfg, SCHEMA)
    if error is not None:
        raise WorkflowError(error)
    validate(cfg, str(SCHEMA))


check_config(config)


envvars:
    "PATH",


# Rules call the package's console script `guidance-repro`. Put the interpreter running Snakemake
# first on PATH so that jobs use the same environment even when it is not activated.
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ["PATH"]]
)


def as_json(obj):
    """A config section as one shell-quoted JSON argument."""
    text = json.dumps(obj, sort_keys=True).replace("'", "'\\''")
    return f"'{text}'"


def fashion_mnist_source(wildcards):
    """No file input: checks the raw IDX folder so a missing dataset stops the DAG at once."""
    fm = config["data"]["fashion_mnist"]
    src = Path(fm["dir"])
    # Once the verified artifact exists (built here or restored by `dvc pull`), the raw files are
    # no longer needed.
    built = Path("results/data/fashion_mnist.npz").is_file()
    if (
        not built
        and not fm["download"]
        and not (src / "train-images-idx3-ubyte.gz").is_file()
    ):
        raise WorkflowError(
            f"config key data.fashion_mnist.dir: no Fashion-MNIST files in {src} "
            "(install the Debian package dataset-fashion-mnist, or set download: true and url)"
        )
    return []


def fashion_mnist_url():
    fm = config["data"]["fashion_mnist"]
    return fm["url"] if fm["download"] else ""


def write_run_record():
    """Leave config, package versions, git commit, hardware and thread counts beside the results."""
    from guidance_repro.io import write_json
    from guidance_repro.report.run_record import record, threads_by_rule

    # `--touch` (after `dvc pull`) only marks restored files as up to date: writing a record then
    # would change results/ behind DVC's back.
    touched = any(a in ("--touch", "-t") for a in sys.argv)
    if Path("results").is_dir() and not touched:
        # The jobs of this run (finished ones included) and the threads each was given; Snakemake
        # exports them to the job as OMP_NUM_THREADS, torch's intra-op thread count.
        ran = workflow.dag.needrun_jobs(exclude_finished=False)
        by_rule = threads_by_rule((job.rule.name, job.threads) for job in ran)
        run = record(config, rule_threads=by_rule, source_dir=workflow.basedir)
        write_json("results/run_record.json", run)


REPLICATES = config["replicates"]


def replicate_count(section):
    """R of one slice (or model): its own `replicates` key where set, else replicates.count. The
    slices' claims differ in signal to noise, so each takes the R its verdicts need
    (tools/verdict_power.py plans it from a seed-shifted pair of runs)."""
    n = section.get("replicates")
    return REPLICATES["count"] if n is None else int(n)


def replicate_ids(count):
    """0 .. R-1 for a slice's R (replicate_count): replicate 0 is the configured run; the others
    re-train claim-critical models."""
    return list(range(count))


def replicate_suffix(r):
    """'' for replicate 0, '-r<r>' otherwise (file names; guidance_repro.replicates)."""
    return replicates.suffix(r)


def replicate_seed(seed, r):
    return replicates.replicate_seed(seed, r, REPLICATES["seed_stride"])


def replicate_train(train, r):
    """A `train` section (less `nproc`) with its seed moved for replicate r."""
    t = {k: v for k, v in train.items() if k != "nproc"}
    return replicates.with_seed(t, r, REPLICATES["seed_stride"])


def train_params(section, **extra):
    """The --params JSON of a trainer: its section (less the launcher-only `nproc`) + extras."""
    params = {k: v for k, v in section.items()}
    params["train"] = {k: v for k, v in section["train"].items() if k != "nproc"}
    params.update(extra)
    return as_json(params)


def evaluator_data(wildcards):
    """The held-out data an evaluator's quality is measured on."""
    if wildcards.name == "classifier":
        return "results/data/fashion_mnist.npz"
    return "results/data/compositions.npz"


def evaluator_kind(wildcards):
    return {
        "classifier": "classifier",
        "composition": "composition",
        "judge_clip": "judge",
    }[wildcards.name]


def training_log(wildcards):
    """The JSON-lines log the training loop writes beside a model file."""
    return f"{wildcards.model}.pt.log.jsonl"


# Evaluator and reference statistics of each experiment the evaluation rules (metrics.smk) measure
# (kind, evaluator file, reference stats); Fashion-MNIST experiments use the toy classifier.
EVALUATE_SETUPS = {
    "star": (
        "toy-composition",
        "results/evaluators/composition.pt",
        "results/reference/compositions-eval.toy-composition.npz",
    ),
}
FMNIST_SETUP = (
    "toy-classifier",
    "results/evaluators/classifier.pt",
    "results/reference/fashion_mnist-test.toy-classifier.npz",
)


def evaluate_kind(experiment):
    return EVALUATE_SETUPS.get(experiment, FMNIST_SETUP)[0]


def evaluate_evaluator(experiment):
    return EVALUATE_SETUPS.get(experiment, FMNIST_SETUP)[1]


def evaluate_reference(experiment):
    return EVALUATE_SETUPS.get(experiment, FMNIST_SETUP)[2]


def evaluate_metrics(experiment):
    """evaluation.metrics, less IS where the evaluator has no classifier head (composition)."""
    names = config["evaluation"]["metrics"].split(",")
    if evaluate_kind(experiment) == "toy-composition":
        names = [m for m in names if m != "is"]
    return ",".join(names)


def evaluated_points():
    """experiment -> the stems of its samples files that get a metrics file."""
    points = {
        "cca_llamagen": [*cl_points(), *cl_replicate_points(), "reconstruction-test"],
        "cca_var": [*cv_points(), *cv_replicate_points(), "reconstruction-test"],
        "star": st_points(),
    }
    # a config may leave the autoguidance section out (paper-tier STAR)
    if "image" in AG:
        points["autoguidance/fmnist"] = ag_image_points()
    return points
