# Helpers of workflow/rules/cca_var_paper.smk: the VAR paper tier's points, fine-tunes and command
# arguments from cca_var.paper (the shared machinery: paper_common.smk). Read only when tier is paper.
CVP = f"{CV_DIR}/paper"
CVP_CFG = CV["paper"]
CVP_FT = CVP_CFG["finetune"]
CVP_SAMPLING = CVP_CFG["sampling"]


def cvp_checkpoint(depth):
    return CVP_CFG["var_checkpoints"][depth]


# Models are named by depth ("16"), as the config's per-depth tables; the table's model tag is d16.
CVP_POINTS, CVP_FINETUNES = paper_points_and_finetunes(
    ("cca_var.paper", CVP_CFG),
    {str(d): f"d{d}" for d in CV["depths"]},
    cvp_checkpoint,
    f"{CVP}/models",
    ".official.pth",
)


def cvp_overrides(flag, depth):
    return paper_json_flag(flag, CVP_CFG["model_overrides"].get(depth, {}))


def cvp_finetune_args(wildcards, threads):
    ft, f = CVP_FINETUNES[wildcards.vp_ft], CVP_FT
    labels = f"--labels-file {CVP_CFG['labels_file']}" if CVP_CFG["labels_file"] else ""
    return " ".join(
        [
            f"--depth {ft['model']} --beta {ft['beta']} --lam {ft['lam']}",
            f"--imagenet {CVP_CFG['imagenet_train']} {labels}",
            f"--resize {CVP_CFG['resize']} --crop {CVP_CFG['crop']}",
            f"--global-batch {f['global_batch']} --lr {f['lr']} --uncond-ratio {f['uncond_ratio']}",
            f"--micro-batch {f['micro_batch']}" if f["micro_batch"] else "",
            f"--steps {f['steps']}" if f["steps"] else "",
            f"--precision {f['precision']} --device {f['device']}",
            f"--checkpoint-every {f['checkpoint_every']} --seed {f['seed']}",
            f"--threads {max(1, threads // f['nproc'])}",
            cvp_overrides("--model-overrides", ft["model"]),
        ]
    )


def cvp_sample_args(wildcards):
    p, s = CVP_POINTS[wildcards.vp_point], CVP_SAMPLING
    return " ".join(
        [
            f"--depth {p['model']} --cfg {p['cfg'] or 0} {paper_point_tags(p)}",
            f"--num {s['num_samples']} --num-shards {s['num_shards']} --seed {s['seed']}",
            f"--chunk-size {s['chunk_size']} --batch-size {s['batch_size']}",
            f"--top-k {s['top_k']} --top-p {s['top_p']} --dtype {s['dtype']} --device {s['device']}",
            cvp_overrides("--model-config", p["model"]),
        ]
    )


def cvp_tiny_width_args():
    """The mini tier's tiny widths for var-check-official (empty in the paper tier)."""
    return " ".join(
        [
            paper_json_flag("--model-overrides", CVP_CFG["model_overrides"]),
            paper_json_flag("--vae-config", CVP_CFG["vae_config"]),
        ]
    )


paper_require_local(
    "cca_var.paper", CVP_CFG, ("imagenet_train", "inception", "reference_batch")
)
