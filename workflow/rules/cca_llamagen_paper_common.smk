# Helpers of workflow/rules/cca_llamagen_paper.smk: the paper tier's points, fine-tunes and the
# command arguments built from cca_llamagen.paper. Read only when tier is paper.
CLP = f"{CL_DIR}/paper"
CLP_CFG = CL["paper"]
CLP_CODES = CLP_CFG["codes"]
CLP_FT = CLP_CFG["finetune"]
CLP_SAMPLING = CLP_CFG["sampling"]


def clp_size(model):
    return cl_spec(model).get("size", model)


def clp_checkpoint(model):
    return CLP_CFG["gpt_checkpoints"][model]


CLP_POINTS, CLP_FINETUNES = paper_points_and_finetunes(
    ("cca_llamagen.paper", CLP_CFG),
    {m: clp_size(m) for m in cl_models()},
    clp_checkpoint,
    f"{CLP}/models",
    ".official.pt",
)


def clp_code_shards():
    n = CLP_CODES["num_shards"]
    return [f"{CLP}/codes/shards/shard-{k:05d}-of-{n:05d}/done.json" for k in range(n)]


def clp_codes_args(wildcards):
    c = CLP_CODES
    labels = f"--labels-file {CLP_CFG['labels_file']}" if CLP_CFG["labels_file"] else ""
    return " ".join(
        [
            f"--data {CLP_CFG['imagenet_train']} {labels} --num-shards {c['num_shards']}",
            f"--image-size {CLP_CFG['image_size']} --crop-range {c['crop_range']}",
            f"--chunk-size {c['chunk_size']} --batch-size {c['batch_size']}",
            f"--workers {c['workers']} --device {c['device']}",
            "--skip-unreadable" if c["skip_unreadable"] else "",
            paper_json_flag("--vq-config", CLP_CFG["vq_config"]),
        ]
    )


def clp_finetune_args(wildcards, threads):
    ft, f = CLP_FINETUNES[wildcards.lp_ft], CLP_FT
    overrides = CLP_CFG["gpt_overrides"].get(ft["model"], {})
    return " ".join(
        [
            f"--size {ft['tag']} --beta {ft['beta']} --lam {ft['lam']}",
            f"--image-size {CLP_CFG['image_size']} --global-batch {f['global_batch']}",
            f"--micro-batch {f['micro_batch']} --lr {f['lr']} --uncond-ratio {f['uncond_ratio']}",
            f"--accumulation-reduce {f['accumulation_reduce']} --precision {f['precision']}",
            f"--parallel {f['parallel']}" if f["parallel"] else "",
            f"--steps {f['steps']}" if f["steps"] else "",
            f"--device {f['device']} --checkpoint-every {f['checkpoint_every']} --seed {f['seed']}",
            f"--threads {max(1, threads // f['nproc'])}",
            paper_json_flag("--model-overrides", overrides),
        ]
    )


def clp_sample_args(wildcards):
    p, s = CLP_POINTS[wildcards.lp_point], CLP_SAMPLING
    return " ".join(
        [
            f"--size {p['tag']} --cfg {p['cfg'] or 1.0} {paper_point_tags(p)}",
            f"--image-size {CLP_CFG['image_size']} --eval-size {CLP_CFG['eval_size']}",
            f"--num {s['num_samples']} --num-shards {s['num_shards']} --seed {s['seed']}",
            f"--chunk-size {s['chunk_size']} --batch-size {s['batch_size']}",
            f"--dtype {s['dtype']} --device {s['device']}",
            paper_json_flag(
                "--gpt-config", CLP_CFG["gpt_overrides"].get(p["model"], {})
            ),
            paper_json_flag("--vq-config", CLP_CFG["vq_config"]),
        ]
    )


paper_require_local("cca_llamagen.paper", CLP_CFG, ("imagenet_train", "inception"))
