"""The CCA paper's ImageNet 256x256 numbers (50k samples, OpenAI evaluator), as data, typed from
the fact sheet ``../shared/reference/cca.md`` (each entry names its section). Not measured here.

``PAPER[(family, model, method)]`` -> dict of fid / is / precision / recall / sfid (absent = the
paper gives none) and ``source``. Methods: ``pretrained`` (no guidance), ``cca`` (CCA, sampled
without guidance), ``cfg`` (the pretrained model with CFG at ``CFG_SCALE``), ``cca_cfg``.

- FID / IS of every size: Figure 1 (cca.md §2.1; the README's "FID (w/o CFG)" agrees).
- Precision / recall: Table 2 (cca.md §2.2) for LlamaGen-3B and VAR-d30; Table 3 (§2.3, with sFID)
  for LlamaGen-L and VAR-d24. Table 3's LlamaGen-L base FID/IS (19.00 / 64.7) differ slightly from
  Figure 1's (19.07 / 64.3); Figure 1's are used for FID/IS.
- CCA+CFG: the paper gives no table number (Figs. 5/6, values UNVERIFIED in cca.md §1.3), so none.
"""

from __future__ import annotations

FIG1 = "cca.md §2.1 (Fig. 1)"
TAB2 = "cca.md §2.2 (Table 2)"
TAB3 = "cca.md §2.3 (Table 3)"

# (no guidance, CCA, CFG) FID / IS, Figure 1
_FIG1 = {
    ("llamagen", "B"): ((32.20, 39.9), (7.04, 220.7), (6.09, 182.5)),
    ("llamagen", "L"): ((19.07, 64.3), (3.43, 288.2), (3.08, 256.1)),
    ("llamagen", "XL"): ((15.55, 79.2), (3.10, 339.0), (2.62, 244.1)),
    ("llamagen", "XXL"): ((14.65, 86.3), (3.12, 329.8), (2.34, 253.9)),
    ("llamagen", "3B"): ((9.38, 112.9), (2.69, 276.8), (2.18, 263.3)),
    ("var", "d16"): ((12.00, 105.5), (4.03, 271.1), (3.36, 280.1)),
    ("var", "d20"): ((8.48, 129.5), (3.02, 282.6), (2.59, 279.1)),
    ("var", "d24"): ((6.20, 154.3), (2.63, 298.8), (2.11, 291.6)),
    ("var", "d30"): ((5.26, 175.6), (2.54, 264.2), (1.94, 325.1)),
}
# (method) -> precision / recall (and sFID) from Tables 2 and 3
_PR = {
    ("llamagen", "3B", "pretrained"): dict(precision=0.69, recall=0.67, source=TAB2),
    ("llamagen", "3B", "cca"): dict(precision=0.80, recall=0.59, source=TAB2),
    ("var", "d30", "pretrained"): dict(precision=0.75, recall=0.62, source=TAB2),
    ("var", "d30", "cca"): dict(precision=0.83, recall=0.56, source=TAB2),
    ("llamagen", "L", "pretrained"): dict(precision=0.61, recall=0.67, sfid=8.78, source=TAB3),
    ("llamagen", "L", "cca"): dict(precision=0.81, recall=0.52, sfid=7.44, source=TAB3),
    ("var", "d24", "pretrained"): dict(precision=0.74, recall=0.62, sfid=8.50, source=TAB3),
    ("var", "d24", "cca"): dict(precision=0.84, recall=0.55, sfid=7.63, source=TAB3),
}

# The CFG scale behind each CFG figure: LlamaGen's 384-px results (cca.md §2.1 note); VAR's is UNVERIFIED.
CFG_SCALE = {("llamagen", "B"): 2.0, ("llamagen", "L"): 2.0, ("llamagen", "XL"): 1.75,
             ("llamagen", "XXL"): 1.75, ("llamagen", "3B"): 1.65}

METHODS = ("pretrained", "cca", "cfg", "cca_cfg")
MODELS = {"llamagen": ("B", "L", "XL", "XXL", "3B"), "var": ("d16", "d20", "d24", "d30")}


def _build() -> dict:
    table = {}
    for (family, model), triple in _FIG1.items():
        for method, (fid, is_) in zip(("pretrained", "cca", "cfg"), triple):
            entry = {"fid": fid, "is": is_, "source": FIG1}
            extra = _PR.get((family, model, method))
            if extra:
                entry.update({k: v for k, v in extra.items() if k != "source"})
                entry["source"] = f"{FIG1}; {extra['source']}"
            table[(family, model, method)] = entry
    return table


PAPER = _build()


def paper_numbers(family: str, model: str, method: str) -> dict:
    """The paper's numbers for one point ({} where the paper gives none, e.g. CCA+CFG)."""
    return PAPER.get((family, model, method), {})


# The setting of each paper point (cca.md §1.3, §2.1): CCA beta / lambda, CCA+CFG beta / lambda, the
# CFG scale s. A table prefers our point at the paper's setting when several were run.
_CCA = {"B": (0.02, 1000), "L": (0.02, 300), "XL": (0.02, 1000), "XXL": (0.02, 1000), "3B": (0.02, 500),
        "d16": (0.02, 50), "d20": (0.02, 50), "d24": (0.02, 100), "d30": (0.02, 1000)}
_CCA_CFG = {"B": (0.1, 1), "L": (0.02, 1), "XL": (0.1, 1), "XXL": (0.1, 1), "3B": (0.1, 1)}


def paper_setting(family: str, model: str, method: str) -> dict:
    """{'beta', 'lam'} or {'cfg'} of the paper's point ({} where unknown)."""
    if method == "cca" and model in _CCA:
        return dict(zip(("beta", "lam"), _CCA[model]))
    if method == "cca_cfg" and family == "llamagen" and model in _CCA_CFG:
        return dict(zip(("beta", "lam"), _CCA_CFG[model]))
    if method == "cfg" and (family, model) in CFG_SCALE:
        return {"cfg": CFG_SCALE[(family, model)]}
    return {}
