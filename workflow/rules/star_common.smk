# Helpers of workflow/rules/star.smk (toy STAR): paths, sweep points, parameters.

ST = config["star"]
ST_DIR = "results/star"
ST_EVAL = config["evaluation"]
ST_ON = config["tier"] != "paper" or ST["paper"]["enabled"]


def st_num(x):
    return f"{float(x):g}"


def st_steps():
    """Length of the main resolution fine-tune."""
    return ST["finetune"]["train"]["steps"]


def st_cca_points():
    c = ST["cca"]
    return [(st_num(c["beta"]), st_num(l)) for l in c["lams"]]


def st_points():
    """Stem of every sampled point (samples, metrics, scores)."""
    n, s = st_steps(), ST["sampling"]
    g0 = st_num(ST["resolution"]["cfg"])
    zero = [0] if ST["resolution"]["zero_shot"] else []
    steps = [*zero, *ST["resolution"]["curve_steps"], n]
    out = [f"{p}-ft{k}-cfg{g0}" for p in ("rope", "absolute") for k in steps]
    out += [f"rope-ft{n}-cfg{st_num(g)}" for g in [0, *s["cfgs"]]]
    out += [f"rope-ft{n}-cca-b{b}-l{l}-cfg0" for b, l in st_cca_points()]
    return list(dict.fromkeys(out))


def st_train_section(section, **over):
    t = {k: v for k, v in section["train"].items() if k != "nproc"}
    t.update(over)
    return t


def st_pretrain_params(wildcards):
    return as_json(
        {
            "model": {**ST["model"], "positions": wildcards.pos},
            "train": st_train_section(ST["pretrain"]),
        }
    )


def st_finetune_params(wildcards):
    return as_json(
        {
            "model": {},
            "train": st_train_section(ST["finetune"], steps=int(wildcards.steps)),
        }
    )


def st_cca_params(wildcards):
    c = ST["cca"]
    return as_json(
        {
            "beta": float(wildcards.beta),
            "lam": float(wildcards.lam),
            "beta_mode": c["beta_mode"],
            "uncond_ratio": c["uncond_ratio"],
            "method": "cca",
            "train": st_train_section(c),
        }
    )


def st_sample_model(wildcards):
    if int(wildcards.steps) == 0:
        return f"{ST_DIR}/models/{wildcards.pos}-low.pt"
    return f"{ST_DIR}/models/{wildcards.pos}-ft{wildcards.steps}{wildcards.stcca}.pt"


def st_sample_extra(wildcards):
    """Tags of a point; the zero-shot point (0 steps) samples the low model on the high schedule."""
    g = float(wildcards.cfg)
    if wildcards.stcca:
        b, l = wildcards.stcca.lstrip("-").split("-")[1:]
        method, tags = "cca", f" --tag beta={b[1:]} --tag lam={l[1:]}"
    else:
        method, tags = ("cfg" if g else "pretrained"), ""
    pn = ",".join(str(p) for p in ST["high"]["patch_nums"])
    zero = f" --patch-nums {pn}" if int(wildcards.steps) == 0 else ""
    return (
        f"--tag pos={wildcards.pos} --tag steps={wildcards.steps} --tag method={method}"
        f"{tags}{zero}"
    )


def st_grid_points():
    n, s = st_steps(), ST["sampling"]
    pts = [f"rope-ft{n}-cfg0"]
    pts += [f"rope-ft{n}-cfg{st_num(max(s['cfgs']))}"] if s["cfgs"] else []
    b, l = st_cca_points()[0]
    return [*pts, f"rope-ft{n}-cca-b{b}-l{l}-cfg0"]


def st_res(wildcards):
    return ST[wildcards.res]


# Paper tier, MJHQ-30K evaluation of STAR's generated images (rules in star_mjhq.smk)
ST_PAPER = ST["paper"]
ST_MJHQ = f"{ST_DIR}/paper/mjhq"
# <category>/<key>.png and, once every prompt has its image, manifest.json
ST_MJHQ_SAMPLED = f"{ST_MJHQ}/generated_images"
ST_MJHQ_CATEGORIES = [
    "animals",
    "art",
    "fashion",
    "food",
    "indoor",
    "landscape",
    "logo",
    "people",
    "plants",
    "vehicles",
]


def st_paper_file(key):
    """The local file or folder at config key ``key`` (dotted); checked before any job starts."""
    path = config
    for part in key.split("."):
        path = path[part]
    if not path or not Path(path).exists():
        raise WorkflowError(
            f"config key {key}: {path!r} not found (local files only; nothing is downloaded)"
        )
    return path


def st_extractor_args():
    return (
        f"--evaluator inception --evaluator-checkpoint"
        f" {st_paper_file('evaluation.inception.weights')}"
        f" --evaluator-option mode={ST_EVAL['inception']['mode']}"
    )


def st_imagereward_args():
    return " ".join(
        f"--{k.replace('_', '-')} {st_paper_file(f'evaluation.imagereward.{k}')}"
        for k in ("checkpoint", "med_config", "tokenizer")
    )


def st_generated_dir():
    """STAR's MJHQ images: star.paper.generated_dir (made elsewhere), else the folder that rule
    star_mjhq_sample fills from the official weights."""
    if ST_PAPER["generated_dir"]:
        return st_paper_file("star.paper.generated_dir")
    return ST_MJHQ_SAMPLED


def st_generated_marker():
    """The completion marker of the DAG's own sampling (nothing when the images are given)."""
    return [] if ST_PAPER["generated_dir"] else [f"{ST_MJHQ_SAMPLED}/manifest.json"]


def st_sample_schedule():
    pn = ST_PAPER["patch_nums"]
    return f"--patch-nums {','.join(str(p) for p in pn)}" if pn else ""


def st_paper_targets():
    """Paper tier: the local-file check and the MJHQ-30K table (of the DAG's own samples unless
    star.paper.generated_dir names images made elsewhere)."""
    return [
        f"{ST_DIR}/paper/checked.json",
        f"{ST_MJHQ}/mjhq.json",
        f"{ST_MJHQ}/mjhq_fid.png",
    ]
