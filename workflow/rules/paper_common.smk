# Helpers of the paper tier's shared rules (workflow/rules/paper.smk). A slice whose paper tier
# samples ADM-format batches registers itself with paper_register(): its points (name -> the
# family's sampling settings and the table's tags), its sampling shards, the ADM reference batch
# and the Inception file. paper.smk then merges each point's shards into one batch, evaluates it
# with the ADM protocol and writes the slice's table beside the paper's, with the same rules for
# every family (LlamaGen now; VAR, EDM2 and STAR register on the same pattern). No rules here.
from types import SimpleNamespace

PAPER_SLICES = {}


def paper_register(slice_name, **spec):
    """spec: family, models (table rows), points {name: dict}, num_shards, reference, inception,
    sfid_network (or None) and evaluation (the pr_k / is_split_size / batch_size / device dict).
    """
    PAPER_SLICES[slice_name] = SimpleNamespace(**spec)


def paper_dir(slice_name):
    return f"results/{slice_name}/paper"


def paper_shard_name(k, n):
    return f"shard-{k:03d}-of-{n:03d}"


def paper_shards(slice_name, point):
    """The shard manifests of one point (what the slice's sampling rule writes)."""
    n = PAPER_SLICES[slice_name].num_shards
    return [
        f"{paper_dir(slice_name)}/samples/{point}/{paper_shard_name(k, n)}.json"
        for k in range(n)
    ]


def paper_metrics(slice_name):
    return [
        f"{paper_dir(slice_name)}/metrics/{p}.json"
        for p in PAPER_SLICES[slice_name].points
    ]


def paper_outputs(slice_name):
    """The slice's final paper-tier artifacts (its `_all` target)."""
    d = paper_dir(slice_name)
    return [
        f"{d}/table.csv",
        f"{d}/table.md",
        f"{d}/figures/fig1.png",
        f"{d}/claims.csv",
    ]


def paper_evaluation_args(wildcards):
    s = PAPER_SLICES[wildcards.pslice]
    e = s.evaluation
    sfid = f"--sfid-network {s.sfid_network}" if s.sfid_network else ""
    return (
        f"{sfid} --pr-k {e['pr_k']} --is-split-size {e['is_split_size']}"
        f" --batch-size {e['batch_size']} --device {e['device']}"
    )


def paper_slice_pattern():
    # A pattern that never matches when no slice is registered (wildcard_constraints needs one).
    return "|".join(sorted(PAPER_SLICES)) or "(?!)"
