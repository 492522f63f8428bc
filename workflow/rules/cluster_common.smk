# What a job asks a cluster for, and how a (multi-)GPU trainer is launched. No rules here.
# Rules take `resources: **job_resources("<kind>")`, kind one of the config's `resources`
# section (training, finetuning, sampling, evaluation). The names are the ones the Snakemake SLURM
# executor plugin reads (gpu, cpus_per_task, mem_mb, runtime, nodes, slurm_partition,
# slurm_account, slurm_extra); a local run leaves them unenforced (no global --resources limit).
# The multi-node entry: one copy per node under srun, building torchrun's rendezvous from SLURM's
# environment.
SLURM_TORCHRUN = Path(workflow.basedir) / "tools" / "slurm-torchrun.sh"


def job_resources(kind, gpus=None):
    """The rule's `resources:` for a kind of job; `gpus` overrides the config's (a rule whose
    device is chosen elsewhere, e.g. star.paper.device)."""
    r = config["resources"][kind]
    gpus = r["gpus"] if gpus is None else gpus
    out = {
        "cpus_per_task": r["cpus"],
        "mem_mb": r["mem_mb"],
        "runtime": r["runtime"],
        "gpu": gpus,
    }
    if r["nodes"] > 1:
        out["nodes"] = r["nodes"]
    if r["partition"]:
        out["slurm_partition"] = r["partition"]
    if r["account"]:
        out["slurm_account"] = r["account"]
    if r["slurm_extra"]:
        out["slurm_extra"] = r["slurm_extra"]
    return out


def processes_per_node(section, kind):
    """Trainer processes per node: the section's train.nproc when set above 1, else one per GPU
    that the kind's resources ask for."""
    nproc = section["train"].get("nproc", 1)
    if nproc > 1 or kind is None:
        return nproc
    return max(1, config["resources"][kind]["gpus"])


def torchrun_launcher(command, nproc, nodes=1):
    """A package command, under torchrun with nproc processes per node when nproc > 1, and on
    several nodes one torchrun per node started by srun (rendezvous from SLURM's env).
    """
    if nodes > 1:
        return (
            f"srun --nodes={nodes} --ntasks-per-node=1 {SLURM_TORCHRUN} {nproc}"
            f" -m guidance_repro {command}"
        )
    if nproc == 1:
        return f"guidance-repro {command}"
    return f"torchrun --standalone --nproc-per-node={nproc} -m guidance_repro {command}"


def train_launcher(section, kind=None):
    """`guidance-repro train` with one process per GPU of the kind's allocation (torchrun_launcher)."""
    nodes = config["resources"][kind]["nodes"] if kind else 1
    return torchrun_launcher("train", processes_per_node(section, kind), nodes)


def machine_cores():
    """Threads of the rules that want the whole machine (timings). Locally all of the run's
    cores; on a cluster the CPUs the evaluation kind asks for, not the submitting host's count.
    """
    # non_local_exec: the submitting snakemake; remote_exec: the same job inside its allocation
    if workflow.non_local_exec or workflow.remote_exec:
        return config["resources"]["evaluation"]["cpus"]
    return workflow.cores
