# Helpers of workflow/rules/report.smk (the reviewers' report): which slices' claims and which
# families' tables exist in this DAG. A slice enters when the config runs it; STAR's claims enter
# as soon as some rule of the DAG writes results/star/claims.csv.
RP_STAR_CLAIMS = "results/star/claims.csv"
RP_SAMPLED = (
    config["tier"] != "paper"
)  # the toy slices; the paper tier registers in PAPER_SLICES


def rp_written_by_a_rule(path):
    return any(path in [str(o) for o in r.output] for r in workflow.rules)


def rp_claims_inputs(wildcards):
    out = []
    if RP_SAMPLED and CL_ON:
        out.append(f"{CL_DIR}/claims.csv")
    if RP_SAMPLED:
        out.append(f"{CV_DIR}/claims.csv")
    if "toy" in AG:
        out.append(f"{AG_TOY}/claims.csv")
    if "image" in AG and AG["image"].get("enabled", True):
        out.append(f"{AG_IMG}/report/claims.csv")
    if RP_SAMPLED and rp_written_by_a_rule(RP_STAR_CLAIMS):
        out.append(RP_STAR_CLAIMS)
    # the paper tier's slices with their table beside the paper's (paper.smk)
    out += [f"{paper_dir(s)}/claims.csv" for s in sorted(PAPER_SLICES)]
    return out


def rp_matrix_inputs(wildcards):
    out = {}
    if RP_SAMPLED and CL_ON:
        out["llamagen"] = f"{CL_DIR}/table.csv"
    if RP_SAMPLED:
        out["var"] = f"{CV_DIR}/table.csv"
    if "image" in AG and AG["image"].get("enabled", True):
        out["fmnist"] = f"{AG_IMG}/report/points.csv"
    return out


def rp_matrix_args(wildcards, input):
    args = []
    if "llamagen" in input.keys():
        args.append(f"--ar llamagen:{cl_sweep_model()}={input.llamagen}")
    if "var" in input.keys():
        args.append(f"--ar var:{cv_sweep_model()}={input.var}")
        args.append(
            "--na 'var:autoguidance=n/a: no AR autoguide for next-scale (VAR) sampling yet'"
        )
    if "fmnist" in input.keys():
        args.append(f"--diffusion fmnist={input.fmnist}")
    return " ".join(args)


def rp_targets():
    """The report targets of the default target (none when no slice samples anything)."""
    out = []
    if rp_claims_inputs(None):
        out += ["results/claims.md", "results/claims.csv", "results/claims.html"]
    if rp_matrix_inputs(None):
        out += ["results/matrix.csv", "results/matrix.md", "results/figures/matrix.png"]
    return out
