# Constants and input/param functions of workflow/rules/autoguidance.smk (kept apart: the linter
# asks for rules and functions in separate files).
from pathlib import Path

AG = config.get("autoguidance", {})
AG_TOY = "results/autoguidance/toy2d"
AG_IMG = "results/autoguidance/fmnist"
AG_CLASSIFIER = "results/evaluators/classifier.pt"
AG_REFERENCE = "results/reference/fashion_mnist-test.toy-classifier.npz"
# The floor of the image FIDs: real training images (as many as a sweep point has) measured
# like a sweep point against the test split's reference (the evaluator's train/test FID).
AG_FLOOR_POINT = "data-train"
# model files of replicate r > 0 carry its suffix (guidance_repro.replicates): main-r1.pt
AG_REPLICATE = "(|-r[1-9][0-9]*)"


def ag_num(x):
    return f"{float(x):g}"


def ag_replicate(wildcards):
    return replicates.parse_suffix(wildcards.rep)


def ag_toy_params(wildcards):
    t = AG["toy"]
    m = t[wildcards.model]
    m = {**m, "train": replicate_train(m["train"], ag_replicate(wildcards))}
    return train_params(
        m,
        layers=t["layers"],
        p_mean=t["p_mean"],
        p_std=t["p_std"],
        tree_seed=t["tree_seed"],
    )


def ag_toy_replicates():
    """The 2-D toy's replicates (autoguidance.toy.replicates, else replicates.count)."""
    return replicate_ids(replicate_count(AG["toy"]))


def ag_image_replicates():
    """The Fashion-MNIST replicates (autoguidance.image.replicates, else replicates.count)."""
    return replicate_ids(replicate_count(AG["image"]))


def ag_toy_models(name):
    """The toy model `name` of every replicate (replicate 0 first)."""
    return [
        f"{AG_TOY}/models/{name}{replicate_suffix(r)}.pt" for r in ag_toy_replicates()
    ]


def ag_toy_seeds():
    return " ".join(
        str(replicate_seed(AG["toy"]["seed"], r)) for r in ag_toy_replicates()
    )


def ag_image_params(wildcards):
    i = AG["image"]
    m = i["models"][wildcards.model]
    m = {**m, "train": replicate_train(m["train"], ag_replicate(wildcards))}
    return train_params(m, p_mean=i["p_mean"], p_std=i["p_std"])


def ag_curves():
    """curve -> (method, guide, swept weights): CFG, then one autoguidance curve per guide."""
    i = AG["image"]
    out = {"cfg": ("cfg", "uncond", i["cfg_w"])}
    out.update({g: ("autoguidance", g, ws) for g, ws in i["guides"].items()})
    return out


def ag_claim_w(curve):
    """The weight the claims compare on `curve` in every replicate (config image.claim_w; its
    first swept weight where the key is absent); must be one of the swept weights."""
    ws = ag_curves()[curve][2]
    w = AG["image"]["claim_w"].get(curve, ws[0] if ws else None)
    if w is None or float(w) not in [float(x) for x in ws]:
        raise WorkflowError(
            f"config key autoguidance.image.claim_w.{curve}: {w} is not among the swept "
            f"weights {ws} of that curve"
        )
    return w


def ag_image_points_of(r):
    """Sample stems of replicate r: the sweep (r = 0) or the claim points (r > 0), suffixed."""
    pts = [("none", "main", 1)]
    for curve, (method, guide, ws) in ag_curves().items():
        pts += [(method, guide, w) for w in (ws if r == 0 else [ag_claim_w(curve)])]
    sfx = replicate_suffix(r)
    return [(f"{m}-{g}-w{ag_num(w)}{sfx}", m, g, w) for m, g, w in pts]


def ag_image_points():
    """Every sample stem the evaluation measures: the replicates' points and the floor."""
    pts = [p[0] for r in ag_image_replicates() for p in ag_image_points_of(r)]
    return pts + [AG_FLOOR_POINT]


def ag_sample_spec(r):
    """The --points JSON of replicate r's sampling job: method, guide, w and output per point."""
    pts = [
        {
            "method": m,
            "guide": g if m != "none" else "",
            "w": float(w),
            "out": f"{AG_IMG}/samples/{stem}.npz",
        }
        for stem, m, g, w in ag_image_points_of(r)
    ]
    return as_json(pts)


def ag_sample_guides(r):
    """name -> model file of every guide replicate r samples with."""
    sfx = replicate_suffix(r)
    names = sorted({g for _, m, g, _ in ag_image_points_of(r) if m != "none"})
    return {g: f"{AG_IMG}/models/{g}{sfx}.pt" for g in names}


def ag_claim_w_json():
    return as_json({c: float(ag_claim_w(c)) for c in ag_curves()})


def ag_targets():
    out = []
    if "toy" in AG:
        out += [
            f"{AG_TOY}/figure1.png",
            f"{AG_TOY}/metrics.json",
            f"{AG_TOY}/claims.csv",
        ]
    # The image experiment's metrics use the evaluator rules (workflow/rules/evaluators.smk).
    if "image" in AG and AG["image"].get("enabled", True):
        out += [
            f"{AG_IMG}/report/claims.csv",
            f"{AG_IMG}/report/ablation.md",
            f"{AG_IMG}/mechanism/guidance.json",
        ]
    if AG.get("edm2", {}).get("enabled", False):
        out += ["results/autoguidance/edm2/check.json"]
    return out
