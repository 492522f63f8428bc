# Constants and input/param functions of workflow/rules/autoguidance.smk (kept apart: the linter
# asks for rules and functions in separate files).
from pathlib import Path

AG = config.get("autoguidance", {})
AG_TOY = "results/autoguidance/toy2d"
AG_IMG = "results/autoguidance/fmnist"
AG_CLASSIFIER = "results/evaluators/classifier.pt"
AG_REFERENCE = "results/reference/fashion_mnist-test.toy-classifier.npz"


def ag_num(x):
    return f"{float(x):g}"


def ag_toy_params(wildcards):
    t = AG["toy"]
    m = t[wildcards.model]
    return train_params(
        m,
        layers=t["layers"],
        p_mean=t["p_mean"],
        p_std=t["p_std"],
        tree_seed=t["tree_seed"],
    )


def ag_image_params(wildcards):
    i = AG["image"]
    return train_params(
        i["models"][wildcards.model], p_mean=i["p_mean"], p_std=i["p_std"]
    )


def ag_image_points():
    """Stem of every image sweep point: none-main-w1, cfg-uncond-w<w>, autoguidance-<guide>-w<w>."""
    i = AG["image"]
    pts = ["none-main-w1"]
    pts += [f"cfg-uncond-w{ag_num(w)}" for w in i["cfg_w"]]
    pts += [
        f"autoguidance-{g}-w{ag_num(w)}" for g, ws in i["guides"].items() for w in ws
    ]
    return pts


def ag_guide_model(wildcards):
    if wildcards.method == "none":
        return []
    return [f"{AG_IMG}/models/{wildcards.guide}.pt"]


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
