# Helpers of the paper tier's shared rules (workflow/rules/paper.smk). A slice whose paper tier
# samples ADM-format batches registers itself with paper_register(): its points (name -> the
# family's sampling settings and the table's tags), its sampling shards, the ADM reference batch
# and the Inception file. paper.smk then merges each point's shards into one batch, evaluates it
# with the ADM protocol and writes the slice's table beside the paper's, with the same rules for
# every family (LlamaGen now; VAR, EDM2 and STAR register on the same pattern). No rules here.
import re
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


def paper_pattern(names):
    """A wildcard constraint matching exactly these names (never matching when there are none)."""
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


def paper_point_tags(point):
    """The --tag flags a sampling shard records for the tables (method, model, beta, lam)."""
    tags = [f"--tag method={point['method']}", f"--tag model={point['tag']}"]
    tags += [f"--tag {k}={point[k]}" for k in ("beta", "lam") if k in point]
    return " ".join(tags)


def paper_require_local(section_path, cfg, keys):
    """The section's local inputs beyond the checkpoints, checked at parse time (named by key)."""
    for key in keys:
        path = cfg[key]
        if not path or not Path(path).exists():
            raise WorkflowError(
                f"config key {section_path}.{key}: {'not set' if not path else f'{path} not found'}"
                " (a local path; nothing is downloaded)"
            )


def paper_json_flag(flag, obj):
    return f"{flag} {as_json(obj)}" if obj else ""


def paper_launcher(command, nproc):
    """A paper-tier fine-tune: nproc processes per node (the `finetuning` resources' nodes)."""
    return torchrun_launcher(command, nproc, config["resources"]["finetuning"]["nodes"])


def paper_points_and_finetunes(
    section, models, checkpoint, models_dir, model_file_suffix
):
    """({point: settings}, {fine-tune: settings}) of a CCA paper slice, for every model x
    `<section>.methods`. models: {model name: the table's model tag}; checkpoint(name): the official
    file; per-model settings come from `<section>.{cfg_scales, cca_cfg_scales, cca_points,
    cca_cfg_points}` (a missing one stops the run naming its key). Points: `<m>-pretrained`,
    `<m>-cfg-cfg<s>`, `<m>-cca-b<beta>-l<lam>`, `<m>-ccacfg-b<beta>-l<lam>-cfg<s>`; the CCA and the
    CCA+CFG point each sample their own fine-tune `<m>-cca-b<beta>-l<lam>`."""
    path, cfg = section
    points, finetunes = {}, {}

    def per_model(key, m):
        if m not in cfg[key]:
            raise WorkflowError(
                f"config key {path}.{key}.{m}: not set (the paper's value: cca.md §1.3, §2.1)"
            )
        return cfg[key][m]

    for m, tag in models.items():
        for method in cfg["methods"]:
            p = {"model": m, "tag": tag, "method": method, "cfg": None}
            name = f"{m}-{method}"
            if method in ("cca", "cca_cfg"):
                pt = per_model("cca_points" if method == "cca" else "cca_cfg_points", m)
                p["beta"], p["lam"] = float(pt["beta"]), float(pt["lam"])
                ft = f"{m}-cca-b{num_text(pt['beta'])}-l{num_text(pt['lam'])}"
                finetunes[ft] = {
                    "model": m,
                    "tag": tag,
                    "beta": p["beta"],
                    "lam": p["lam"],
                }
                p["model_file"] = f"{models_dir}/{ft}{model_file_suffix}"
                short = "cca" if method == "cca" else "ccacfg"
                name = f"{m}-{short}-b{num_text(pt['beta'])}-l{num_text(pt['lam'])}"
            else:
                p["model_file"] = checkpoint(m)
            if method in ("cfg", "cca_cfg"):
                p["cfg"] = float(
                    per_model("cfg_scales" if method == "cfg" else "cca_cfg_scales", m)
                )
                name += f"-cfg{num_text(p['cfg'])}"
            points[name] = p
    return points, finetunes


def num_text(x):
    return f"{float(x):g}"
