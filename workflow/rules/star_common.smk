# Helpers of workflow/rules/star.smk (toy STAR): paths, sweep points, parameters.

import re
from types import SimpleNamespace

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


def st_claim_cfg():
    """The CFG claim's scale, fixed a priori: the sweep's largest."""
    return max(ST["sampling"]["cfgs"]) if ST["sampling"]["cfgs"] else 0.0


def st_claim_points(r):
    """The points every replicate r samples: what the four claims compare (the resolution step's
    RoPE and absolute-PE models, the whole small CFG sweep and the CCA model at the first lambda).
    """
    n, suf = st_steps(), replicate_suffix(r)
    g0 = st_num(ST["resolution"]["cfg"])
    b, l = st_cca_points()[0]
    out = [f"{p}-ft{n}{suf}-cfg{g0}" for p in ("rope", "absolute")]
    out += [f"rope-ft{n}{suf}-cfg{st_num(g)}" for g in [0, *ST["sampling"]["cfgs"]]]
    out += [f"rope-ft{n}-cca-b{b}-l{l}{suf}-cfg0"]
    return list(dict.fromkeys(out))


# The floors of the slice's FIDs, made by star_floor: real train images, their reconstructions.
ST_FLOOR_POINTS = ["data-train", "reconstruction-train"]


def st_points():
    """Stem of every sampled point (samples, metrics, scores): replicate 0's sweeps, the claim
    points of replicates 1..R-1 and the floors."""
    n, s = st_steps(), ST["sampling"]
    g0 = st_num(ST["resolution"]["cfg"])
    zero = [0] if ST["resolution"]["zero_shot"] else []
    steps = [*zero, *ST["resolution"]["curve_steps"], n]
    out = [f"{p}-ft{k}-cfg{g0}" for p in ("rope", "absolute") for k in steps]
    out += [f"rope-ft{n}-cfg{st_num(g)}" for g in [0, *s["cfgs"]]]
    out += [f"rope-ft{n}-cca-b{b}-l{l}-cfg0" for b, l in st_cca_points()]
    out += [p for r in replicate_ids(replicate_count(ST)) for p in st_claim_points(r)]
    return list(dict.fromkeys(out + ST_FLOOR_POINTS))


def st_replicate(wildcards):
    return replicates.parse_suffix(wildcards.rep)


def st_train_section(section, **over):
    t = {k: v for k, v in section["train"].items() if k != "nproc"}
    t.update(over)
    return t


def st_replicate_train(section, wildcards, **over):
    """A `train` section with its seed moved for the wildcards' replicate (replicate 0: as configured)."""
    return {**replicate_train(section["train"], st_replicate(wildcards)), **over}


def st_pretrain_params(wildcards):
    return as_json(
        {
            "model": {**ST["model"], "positions": wildcards.pos},
            "train": st_replicate_train(ST["pretrain"], wildcards),
        }
    )


def st_finetune_params(wildcards):
    return as_json(
        {
            "model": {},
            "train": st_replicate_train(
                ST["finetune"], wildcards, steps=int(wildcards.steps)
            ),
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
            "train": st_replicate_train(c, wildcards),
        }
    )


def st_sample_model(wildcards):
    if int(wildcards.steps) == 0:
        return f"{ST_DIR}/models/{wildcards.pos}-low{wildcards.rep}.pt"
    return f"{ST_DIR}/models/{wildcards.pos}-ft{wildcards.steps}{wildcards.stcca}{wildcards.rep}.pt"


# A point's stem: <pos>-ft<steps>[-cca-b<beta>-l<lam>][-r<replicate>]-cfg<cfg>
ST_POINT = re.compile(
    r"(?P<pos>rope|absolute)-ft(?P<steps>[0-9]+)(?P<stcca>-cca-b[0-9.e+-]+-l[0-9.e+-]+?)?"
    r"(?P<rep>-r[1-9][0-9]*)?-cfg(?P<cfg>[0-9.e+-]+)"
)


def st_point_wildcards(point):
    m = ST_POINT.fullmatch(point)
    if m is None:
        raise WorkflowError(
            f"STAR point {point!r}: not <pos>-ft<steps>[-cca-b-l][-r<r>]-cfg<cfg>"
        )
    return SimpleNamespace(**{k: v or "" for k, v in m.groupdict().items()})


def st_replicate_points(r):
    """The sampled points of replicate r: replicate 0 the sweeps, the others the claim points."""
    if r:
        return st_claim_points(r)
    return [
        p
        for p in st_points()
        if p not in ST_FLOOR_POINTS and not st_point_wildcards(p).rep
    ]


def st_sample_tags(w):
    """Tags of a point (into its samples' meta and metrics JSON): method, CCA's beta and lambda,
    the replicate and the training seeds of the chain behind it."""
    g, r = float(w.cfg), st_replicate(w)
    tags = {"pos": w.pos, "steps": w.steps, "replicate": r}
    if w.stcca:
        b, l = w.stcca.lstrip("-").split("-")[1:]
        tags.update(method="cca", beta=b[1:], lam=l[1:])
    else:
        tags["method"] = "cfg" if g else "pretrained"
    chain = {"pretrain": ST["pretrain"], "finetune": ST["finetune"]}
    chain.update({"cca": ST["cca"]} if w.stcca else {})
    tags.update(
        {f"seed_{k}": replicate_train(v["train"], r)["seed"] for k, v in chain.items()}
    )
    return tags


def st_sample_points(r):
    """--points of replicate r's sampling job; the zero-shot point (0 steps) samples the low model
    on the high schedule; the sampling seed moves with the replicate."""
    pn = ",".join(str(p) for p in ST["high"]["patch_nums"])
    out = []
    for point in st_replicate_points(r):
        w = st_point_wildcards(point)
        out.append(
            {
                "model": st_sample_model(w),
                "cfg": float(w.cfg),
                "seed": replicate_seed(ST_EVAL["seed"], r),
                "patch_nums": pn if int(w.steps) == 0 else "",
                "tags": st_sample_tags(w),
                "out": f"{ST_DIR}/samples/{point}.npz",
            }
        )
    return out


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
