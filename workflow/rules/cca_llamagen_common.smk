# Helpers of workflow/rules/cca_llamagen.smk (CCA on LlamaGen-style next-token AR): paths, sweep
# points, parameters, the paper-tier file checks.
import re

from guidance_repro import replicates
from types import SimpleNamespace

CL = config["cca_llamagen"]
CL_DIR = "results/cca_llamagen"
CL_EVAL = config["evaluation"]
CL_NUM = CL["sampling"]["num_samples"] or CL_EVAL["num_samples"]
CL_CLASSIFIER = "results/evaluators/classifier.pt"
CL_REFERENCE = "results/reference/fashion_mnist-test.toy-classifier.npz"
CL_BENCH_SCRIPT = str(Path(workflow.basedir) / "benchmarks" / "ar_sampling.py")
CL_ON = config["tier"] != "paper" or CL["paper"]["enabled"]


def cl_num(x):
    return f"{float(x):g}"


def cl_models():
    names = [m["name"] for m in CL["models"]]
    if len(set(names)) != len(names):
        raise WorkflowError(f"config key cca_llamagen.models: names repeat ({names})")
    return names


def cl_spec(name):
    """The GPTConfig fields (or `size` + overrides) of one named model."""
    spec = next(m for m in CL["models"] if m["name"] == name)
    return {k: v for k, v in spec.items() if k not in ("name", "replicates")}


def cl_replicates(name):
    """R of one model's claims: its `replicates` key in cca_llamagen.models, else replicates.count."""
    return replicate_count(next(m for m in CL["models"] if m["name"] == name))


def cl_sweep_model():
    m = CL["cca"]["sweep_model"] or cl_models()[0]
    if m not in cl_models():
        raise WorkflowError(
            f"config key cca_llamagen.cca.sweep_model: {m!r} is not one of cca_llamagen.models"
        )
    return m


def cl_main():
    c = CL["cca"]
    return cl_num(c["betas"][0]), cl_num(c["lams"][0])


def cl_finetunes():
    """(model, method, beta, lam) of every fine-tune: the main CCA point per model; the λ sweep
    (β fixed), the β sweep (λ fixed) and the DPO / unlearning baselines on the sweep model.
    """
    c, m = CL["cca"], cl_sweep_model()
    b0, l0 = cl_main()
    pts = {(x, "cca", b0, l0) for x in cl_models()}
    pts |= {(m, "cca", b0, cl_num(l)) for l in c["lams"]}
    pts |= {(m, "cca", cl_num(b), l0) for b in c["betas"]}
    pts |= {(m, meth, b0, l0) for meth in c["baselines"]}
    return sorted(pts)


def cl_points():
    """Stem of every sampled point of the table (samples/<stem>.npz, metrics/<stem>.json)."""
    s, (b0, l0) = CL["sampling"], cl_main()
    out = [f"{m}-pretrained-cfg1" for m in cl_models()]
    out += [f"{m}-pretrained-cfg{cl_num(g)}" for m in cl_models() for g in s["cfgs"]]
    out += [f"{m}-{meth}-b{b}-l{l}-cfg1" for m, meth, b, l in cl_finetunes()]
    out += [
        f"{m}-cca-b{b0}-l{l0}-cfg{cl_num(g)}"
        for m in cl_models()
        for g in s["cca_cfg_scales"]
    ]
    out += cl_autoguidance_points()
    out += cl_claim_points(0)
    return sorted(set(out))


def cl_autoguidance_points():
    """AR autoguidance of the sweep model (cross-method matrix): <model>-autoguidance-w<w>."""
    m = cl_sweep_model()
    return [f"{m}-autoguidance-w{cl_num(w)}" for w in CL["autoguide"]["ws"]]


def cl_autoguide_params(wildcards):
    """The guide: the main model's spec with `autoguide.model` overrides, trained shorter."""
    a = CL["autoguide"]
    spec = {**cl_gpt_config(wildcards.lg_model), **a["model"]}
    return as_json({"model": spec, "train": cl_train(a)})


def cl_rep(wildcards):
    """The replicate of a file from its suffix wildcard ('' -> 0, '-r<r>' -> r)."""
    return replicates.parse_suffix(wildcards.lg_rep)


def cl_claim_points(r):
    """Stems of replicate r's claim points per model that has replicate r (chosen a priori,
    report/cca_claims.py): no guidance, CCA at the main beta/lambda, CFG at each of
    sampling.claim_cfgs (the claim takes the replicate's best)."""
    b0, l0 = cl_main()
    sfx = replicate_suffix(r)
    return [
        p + sfx
        for m in cl_models()
        if r < cl_replicates(m)
        for p in (
            f"{m}-pretrained-cfg1",
            f"{m}-cca-b{b0}-l{l0}-cfg1",
            *(f"{m}-pretrained-cfg{cl_num(g)}" for g in CL["sampling"]["claim_cfgs"]),
        )
    ]


def cl_all_replicates():
    """0 .. the largest R of any model (cl_claim_points(r) keeps the models that have r)."""
    return replicate_ids(max(cl_replicates(m) for m in cl_models()))


def cl_all_claim_points():
    return [p for r in cl_all_replicates() for p in cl_claim_points(r)]


def cl_replicate_points():
    """The claim points of replicates r >= 1 (replicate 0's are points of the table)."""
    return [p for r in cl_all_replicates()[1:] for p in cl_claim_points(r)]


def cl_gpt_config(model):
    """The GPTConfig fields of a model; vocab_size follows the tokenizer's codebook_size."""
    spec = cl_spec(model)
    codebook = CL["tokenizer"]["model"].get("codebook_size", 512)
    if config["tier"] != "paper":
        if spec.setdefault("vocab_size", codebook) != codebook:
            raise WorkflowError(
                f"config key cca_llamagen.models.{model}.vocab_size: {spec['vocab_size']} must "
                f"equal cca_llamagen.tokenizer.model.codebook_size ({codebook})"
            )
    return spec


def cl_train(section, r=0):
    """A trainer's `train` section for replicate r (seed moved; r = 0: as configured)."""
    return replicate_train(section["train"], r)


def cl_pretrain_params(wildcards):
    return as_json(
        {
            "model": cl_gpt_config(wildcards.lg_model),
            "train": cl_train(CL["pretrain"], cl_rep(wildcards)),
        }
    )


def cl_finetune_params(wildcards):
    c = CL["cca"]
    return as_json(
        {
            "beta": float(wildcards.lg_beta),
            "lam": float(wildcards.lg_lam),
            "method": wildcards.lg_method,
            "beta_mode": c["beta_mode"],
            "uncond_ratio": c["uncond_ratio"],
            "class_dropout": c["class_dropout"],
            "dropout": c["dropout"],
            "train": cl_train(c, cl_rep(wildcards)),
        }
    )


def cl_shares_reference(model):
    """Whether the fine-tunes of ``model`` reuse one recorded pass of the frozen reference."""
    c = CL["cca"]
    return (
        c["share_reference"]
        and c["dropout"] == "off"
        and c["train"].get("nproc", 1) == 1
        and sum(m == model for m, *_ in cl_finetunes()) > 1
    )


def cl_reference_params(wildcards):
    """The main CCA point's params: the recorded reference depends only on what every sweep point
    shares (data order, seed, uncond_ratio, class_dropout, dropout; checked when reused).
    """
    b0, l0 = cl_main()
    return cl_finetune_params(
        SimpleNamespace(lg_beta=b0, lg_lam=l0, lg_method="cca", lg_rep="")
    )


def cl_finetune_inputs(wildcards):
    out = {
        "base": f"{CL_DIR}/models/{wildcards.lg_model}-pretrained{wildcards.lg_rep}.pt",
        "codes": f"{CL_DIR}/codes-train.npz",
    }
    # replicates r >= 1 fine-tune one point per model: nothing to share
    if not wildcards.lg_rep and cl_shares_reference(wildcards.lg_model):
        out["ref"] = f"{CL_DIR}/models/{wildcards.lg_model}-reference-logp.npz"
    return out


def cl_reference_arg(wildcards, input):
    return f" --input reference_logp={input.ref}" if "ref" in input.keys() else ""


def cl_sample_model(wildcards):
    w = wildcards
    if w.lg_kind == "pretrained":
        return f"{CL_DIR}/models/{w.lg_model}-pretrained{w.lg_rep}.pt"
    return f"{CL_DIR}/models/{w.lg_model}-{w.lg_kind}{w.lg_ft}{w.lg_rep}.pt"


def cl_sample_tags(wildcards):
    g = float(wildcards.lg_cfg)
    if wildcards.lg_kind == "pretrained":
        method, tags = ("pretrained" if g == 1 else "cfg"), ""
    else:
        method = wildcards.lg_kind
        if wildcards.lg_kind == "cca" and g != 1:
            method = "cca_cfg"
        b, l = re.fullmatch(r"-b(.+)-l(.+)", wildcards.lg_ft).groups()
        tags = f" --tag beta={b} --tag lam={l}"
    # the replicate and the seed its model was trained with (recorded in the claims JSON)
    r = cl_rep(wildcards)
    section = CL["pretrain"] if wildcards.lg_kind == "pretrained" else CL["cca"]
    seed = cl_train(section, r)["seed"]
    return (
        f"--tag model={wildcards.lg_model} --tag method={method}{tags}"
        f" --tag replicate={r} --tag train_seed={seed}"
    )


def cl_sample_seed(wildcards):
    return replicate_seed(CL_EVAL["seed"], cl_rep(wildcards))


def cl_grid_points():
    """Sample grid: the sweep model without guidance, with the largest CFG scale, after CCA."""
    m, s, (b0, l0) = cl_sweep_model(), CL["sampling"], cl_main()
    cfg = [f"{m}-pretrained-cfg{cl_num(max(s['cfgs']))}"] if s["cfgs"] else []
    return [f"{m}-pretrained-cfg1", *cfg, f"{m}-cca-b{b0}-l{l0}-cfg1"]


def cl_official_files(wildcards):
    """Paper tier: the local files named in cca_llamagen.paper, checked before anything runs."""
    p = CL["paper"]
    keys = [(f"gpt_checkpoints.{m}", p["gpt_checkpoints"].get(m)) for m in cl_models()]
    keys += [("vq_checkpoint", p["vq_checkpoint"])]
    keys += [("reference_batch", p["reference_batch"])]
    for key, path in keys:
        if not path:
            raise WorkflowError(
                f"config key cca_llamagen.paper.{key}: local path not set (no download is attempted)"
            )
        if not Path(path).is_file():
            raise WorkflowError(
                f"config key cca_llamagen.paper.{key}: file {path} not found "
                "(copy the official file to local disk first; cca.md §1.3, §3)"
            )
    return [path for _, path in keys]


def cl_tiny_width_args():
    """The mini tier's tiny widths (cca_llamagen.paper.gpt_overrides / vq_config; empty in the paper tier)."""
    p, out = CL["paper"], []
    overrides = {cl_spec(m).get("size", m): v for m, v in p["gpt_overrides"].items()}
    if overrides:
        out.append(f"--gpt-overrides {as_json(overrides)}")
    if p["vq_config"]:
        out.append(f"--vq-config {as_json(p['vq_config'])}")
    return " ".join(out)


# Paper tier: check the named local files up front, so that a missing one stops the run at once
# with its config key (before any DAG is built).
if config["tier"] == "paper" and CL_ON:
    cl_official_files(None)
