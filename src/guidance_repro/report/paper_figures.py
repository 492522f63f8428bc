"""The papers' own figures for each claim the slices test, with their source (the fact sheets in
``../shared/reference/``: file and section). Facts typed from those sheets, not measured here.

Keyed by (experiment, claim) exactly as the slice claims CSVs spell them. A slice may instead carry
``paper_figure`` / ``paper_source`` / ``paper_protocol`` columns itself (they take precedence).
"""

from __future__ import annotations

PAPERS = {
    "cca": "CCA (Chen et al., ICLR 2025)",
    "autoguidance": "Autoguidance (Karras et al., NeurIPS 2024)",
    "star": "STAR (Ma et al., 2024)",
}

# The protocol behind each paper's figures.
PAPER_PROTOCOL = {
    "cca": "ImageNet 256×256, 50k samples, OpenAI guided-diffusion evaluator vs "
           "VIRTUAL_imagenet256_labeled.npz (cca.md §3)",
    "autoguidance": "ImageNet-512 EDM2, 50k samples, FID by edm2 calculate_metrics, min over 3 seed "
                    "sets (autoguidance.md §2, §6)",
    "autoguidance-toy2d": "the 2-D tree-of-Gaussians toy, Fig. 1 settings (autoguidance.md §4)",
    "star": "MJHQ-30K, CLIP score / FID (star.md §4, §5)",
}

# What this tier's run measures (the paper tier uses the paper's protocol above).
TOY_PROTOCOL = {
    "cca": "Fashion-MNIST 28 px class-conditional; FID / IS / recall on the toy classifier's "
           "features vs the test split (sample count in each metrics JSON)",
    "autoguidance": "Fashion-MNIST 28 px EDM denoisers; FID / recall on the toy classifier's "
                    "features vs the test split",
    "autoguidance-toy2d": "the paper's 2-D toy (same tree, exact densities), our trained models",
    "star": "captioned compositions 32 px; toy judge CLIP and composition evaluator",
}

_CCA_L = "cca.md §2.1 (Fig. 1)"
_AG_T1 = "autoguidance.md §5 (Table 1)"
_AG_F1 = "autoguidance.md §4 (Fig. 1)"

FIGURES = {
    ("cca-llamagen", "CCA lowers the guidance-free FID"):
        ("LlamaGen-L 19.07 → 3.43; LlamaGen-3B 9.38 → 2.69 (FID, no guidance → CCA)", _CCA_L),
    ("cca-llamagen", "guidance-free CCA matches the best CFG FID"):
        ("CCA vs CFG FID: LlamaGen-L 3.43 vs 3.08; 3B 2.69 vs 2.18 (close to CFG, not below it: "
         "this run's test would not hold on the paper's numbers either; gap_closed L 0.98, 3B 0.93)", _CCA_L),
    ("cca-llamagen", "guidance-free sampling costs about half of CFG"):
        ("CFG runs a doubled [cond; uncond] batch: 2 forward passes per token vs 1", "cca.md §3 (CFG row)"),
    ("cca-var", "CCA lowers the guidance-free FID"):
        ("VAR-d16 12.00 → 4.03; VAR-d30 5.26 → 2.54 (FID, no guidance → CCA)", _CCA_L),
    ("cca-var", "guidance-free CCA matches the best CFG FID"):
        ("CCA vs CFG FID: VAR-d16 4.03 vs 3.36; d30 2.54 vs 1.94 (close to CFG, not below it; "
         "gap_closed d16 0.92, d30 0.82)", _CCA_L),
    ("cca-var", "guidance-free sampling costs about half of CFG"):
        ("CFG runs a doubled [cond; uncond] batch: 2 forward passes per scale vs 1", "cca.md §3 (CFG row)"),
    ("autoguidance-fmnist", "autoguidance beats CFG in best FID"):
        ("EDM2-S IN-512: autoguidance 1.34 (w 2.10) vs CFG 2.23 (w 1.40); XXL 1.25 vs 1.81", _AG_T1),
    ("autoguidance-fmnist", "autoguidance keeps variation better than CFG"):
        ("no recall in the paper; FD_DINOv2 36.67 (autoguidance) vs 52.32 (CFG); CFG's class push "
         "costs variation (§1 'Why it works')", "autoguidance.md §1, §5 (Table 1)"),
    ("autoguidance-fmnist", "autoguidance improves on the unguided model"):
        ("EDM2-S 2.56 → 1.34; EDM2-XXL 1.91 → 1.25 (FID)", _AG_T1),
    ("autoguidance-fmnist",
     "ablation order (Table 1): both reductions <= shorter only <= smaller only"):
        ("1.34 (smaller and shorter) ≤ 1.51 (shorter only) ≤ 2.13 (smaller only)", _AG_T1),
    ("autoguidance-toy2d", "autoguidance keeps the branches that CFG drops"):
        ("Fig. 1: CFG (w 4) drops branches, autoguidance (w 3) keeps them (panels, no numbers)", _AG_F1),
    ("autoguidance-toy2d", "autoguidance keeps (almost) all branches of the unguided model"):
        ("Fig. 1: autoguidance keeps all branches (panels, no numbers)", _AG_F1),
    ("autoguidance-toy2d", "CFG cuts outliers vs unguided"):
        ("Fig. 1: CFG concentrates samples inside the class (panels, no numbers)", _AG_F1),
    ("autoguidance-toy2d", "autoguidance cuts outliers vs unguided"):
        ("Fig. 1: autoguidance removes outliers (panels, no numbers)", _AG_F1),
    ("autoguidance-toy2d", "naive score scaling empties outer branches (coverage below unguided)"):
        ("Fig. 1: truncation (score × 1.40) empties the outer branches (panels, no numbers)", _AG_F1),
}


def paper_of(experiment: str) -> str:
    """The paper key of an experiment name (the part before the first '-')."""
    return experiment.split("-", 1)[0]


def protocol(experiment: str, tier: str) -> tuple[str, str]:
    """(the paper's protocol, this run's protocol) of an experiment."""
    paper = paper_of(experiment)
    theirs = PAPER_PROTOCOL.get(experiment, PAPER_PROTOCOL.get(paper, ""))
    if tier == "paper":
        return theirs, "the paper's protocol"
    ours = TOY_PROTOCOL.get(experiment, TOY_PROTOCOL.get(paper, ""))
    return theirs, f"{tier} tier: {ours}"
