# Helpers of workflow/rules/cca_var.smk (CCA on VAR): paths, sweep points, claim points of the
# replicates, parameters.
from guidance_repro import replicates

CV = config["cca_var"]
CV_DIR = "results/cca_var"
CV_EVAL = config["evaluation"]
CV_NUM = CV["sampling"]["num_samples"] or CV_EVAL["num_samples"]
CV_CLASSIFIER = "results/evaluators/classifier.pt"
CV_REFERENCE = "results/reference/fashion_mnist-test.toy-classifier.npz"
CV_BENCH_SCRIPT = str(Path(workflow.basedir) / "benchmarks" / "var_sampling.py")
# In the paper tier the slice runs only when its config enables it: another paper config (e.g.
# cca-llamagen.yaml) merged over config/config.yaml must not plan VAR from the toy section.
CV_ON = config["tier"] != "paper" or CV["paper"]["enabled"]


def cv_num(x):
    return f"{float(x):g}"


def cv_models():
    return [f"d{d}" for d in CV["depths"]]


def cv_sweep_model():
    return f"d{CV['cca']['sweep_depth'] or max(CV['depths'])}"


def cv_main():
    """The main (beta, lambda) of CCA: the first of each list, fixed a priori for the claims."""
    c = CV["cca"]
    return cv_num(c["betas"][0]), cv_num(c["lams"][0])


def cv_replicate_depths():
    """Depths whose claim models are re-trained for replicates 1..R-1 (null: every depth)."""
    chosen = CV["replicate_depths"]
    if chosen is None:
        return list(CV["depths"])
    stray = [d for d in chosen if d not in CV["depths"]]
    if stray:
        raise WorkflowError(
            f"config key cca_var.replicate_depths: depth {stray[0]} is not in cca_var.depths"
        )
    return list(chosen)


def cv_claim_points(r):
    """Stems of replicate r's claim points (report/cca_claims.py), chosen a priori: per depth that
    has replicate r, no guidance, CCA at the main beta/lambda, CFG at each of sampling.claim_cfgs
    (the claim takes the replicate's best)."""
    b0, l0 = cv_main()
    depths = CV["depths"] if r == 0 else cv_replicate_depths()
    cfgs = CV["sampling"]["claim_cfgs"]
    sfx = replicate_suffix(r)
    return [
        p + sfx
        for d in depths
        for p in (
            f"d{d}-pretrained-cfg0",
            f"d{d}-cca-b{b0}-l{l0}-cfg0",
            *(f"d{d}-pretrained-cfg{cv_num(g)}" for g in cfgs),
        )
    ]


def cv_all_claim_points():
    return [p for r in replicate_ids(replicate_count(CV)) for p in cv_claim_points(r)]


def cv_replicate_points():
    """The claim points of replicates r >= 1 (replicate 0's are points of the table)."""
    return [
        p for r in replicate_ids(replicate_count(CV))[1:] for p in cv_claim_points(r)
    ]


def cv_rep(wildcards):
    """The replicate of a file from its suffix wildcard ('' -> 0, '-r<r>' -> r)."""
    return replicates.parse_suffix(wildcards.rep)


def cv_cca_points():
    """(model, beta, lam) of every CCA fine-tune: the main point per depth, the sweeps on one."""
    c = CV["cca"]
    b0, l0 = cv_main()
    pts = {(m, b0, l0) for m in cv_models()}
    pts |= {(cv_sweep_model(), b0, cv_num(l)) for l in c["lams"]}
    pts |= {(cv_sweep_model(), cv_num(b), l0) for b in c["betas"]}
    return sorted(pts)


def cv_points():
    """Stem of every sampled point (samples, metrics)."""
    s = CV["sampling"]
    out = [f"{m}-pretrained-cfg0" for m in cv_models()]
    out += [f"{m}-pretrained-cfg{cv_num(g)}" for m in cv_models() for g in s["cfgs"]]
    out += [f"{m}-cca-b{b}-l{l}-cfg0" for m, b, l in cv_cca_points()]
    b0, l0 = cv_main()
    out += [
        f"{m}-cca-b{b0}-l{l0}-cfg{cv_num(g)}"
        for m in cv_models()
        for g in s["cca_cfg_scales"]
    ]
    out += cv_claim_points(0)
    return sorted(set(out))


def cv_train(section, r=0):
    """A trainer's `train` section for replicate r (seed moved; r = 0: as configured)."""
    return replicate_train(section["train"], r)


def cv_model_params(wildcards):
    return as_json(
        {
            "model": {**CV["model"], "depth": int(wildcards.depth)},
            "train": cv_train(CV["pretrain"], cv_rep(wildcards)),
        }
    )


def cv_cca_params(wildcards):
    c = CV["cca"]
    return as_json(
        {
            "beta": float(wildcards.beta),
            "lam": float(wildcards.lam),
            "beta_mode": c["beta_mode"],
            "uncond_ratio": c["uncond_ratio"],
            "method": c["method"],
            "drop_path": c["drop_path"],
            "train": cv_train(c, cv_rep(wildcards)),
        }
    )


def cv_sample_model(wildcards):
    w = wildcards
    if w.kind == "pretrained":
        return f"{CV_DIR}/models/d{w.depth}-pretrained{w.rep}.pt"
    return f"{CV_DIR}/models/d{w.depth}-cca{w.cca}{w.rep}.pt"


def cv_sample_seed(wildcards):
    return replicate_seed(CV_EVAL["seed"], cv_rep(wildcards))


def cv_sample_tags(wildcards):
    g = float(wildcards.cfg)
    if wildcards.kind == "pretrained":
        method, tags = ("cfg" if g else "pretrained"), ""
    else:
        method = "cca_cfg" if g else "cca"
        b, l = wildcards.cca.lstrip("-").split("-")
        tags = f" --tag beta={b[1:]} --tag lam={l[1:]}"
    # the replicate and the seed its model was trained with (recorded in the claims JSON)
    r = cv_rep(wildcards)
    section = CV["pretrain"] if wildcards.kind == "pretrained" else CV["cca"]
    seed = cv_train(section, r)["seed"]
    return (
        f"--tag model=d{wildcards.depth} --tag method={method}{tags}"
        f" --tag replicate={r} --tag train_seed={seed}"
    )


def cv_official_files(wildcards):
    """Paper tier: the official files named in cca_var.paper, checked up front."""
    p = CV["paper"]
    files = {f"d{d}": p["var_checkpoints"].get(str(d)) for d in CV["depths"]}
    missing = [
        f"cca_var.paper.var_checkpoints.{k[1:]}" for k, v in files.items() if not v
    ]
    if not p["vae_checkpoint"]:
        missing.append("cca_var.paper.vae_checkpoint")
    if missing:
        raise WorkflowError(
            f"config key {missing[0]}: path of the official file not set"
        )
    paths = [*files.values(), p["vae_checkpoint"]]
    absent = [x for x in paths if not Path(x).is_file()]
    if absent:
        raise WorkflowError(
            f"config key cca_var.paper: official file {absent[0]} not found "
            "(download var_d*.pth / vae_ch160v4096z32.pth to local disk first)"
        )
    return paths


def cv_grid_points():
    """Sample grid: the sweep model without guidance, with the largest CFG, and after CCA."""
    m, s = cv_sweep_model(), CV["sampling"]
    b0, l0 = cv_main()
    cfg = [f"{m}-pretrained-cfg{cv_num(s['cfgs'][-1])}"] if s["cfgs"] else []
    return [f"{m}-pretrained-cfg0", *cfg, f"{m}-cca-b{b0}-l{l0}-cfg0"]
