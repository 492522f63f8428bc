# Helpers of workflow/rules/cca_llamagen_paper.smk: the paper tier's points, fine-tunes and the
# command arguments built from cca_llamagen.paper. Read only when tier is paper.
CLP = f"{CL_DIR}/paper"
CLP_CFG = CL["paper"]
CLP_CODES = CLP_CFG["codes"]
CLP_FT = CLP_CFG["finetune"]
CLP_SAMPLING = CLP_CFG["sampling"]
# Table point names: the method, then what distinguishes the point (the fine-tune, the CFG scale).
CLP_METHOD_NAMES = {"cca": "cca", "cca_cfg": "ccacfg"}


def clp_size(model):
    return cl_spec(model).get("size", model)


def clp_pattern(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


def clp_per_model(key, model):
    """cca_llamagen.paper.<key>.<model>: the paper's per-size setting; a missing one stops the run."""
    table = CLP_CFG[key]
    if model not in table:
        raise WorkflowError(
            f"config key cca_llamagen.paper.{key}.{model}: not set (the paper's value for "
            f"size {clp_size(model)}: cca.md §1.3, §2.1)"
        )
    return table[model]


def clp_checkpoint(model):
    return CLP_CFG["gpt_checkpoints"][model]


def clp_points_and_finetunes():
    """({point: settings}, {fine-tune: settings}) for every model x cca_llamagen.paper.methods."""
    points, finetunes = {}, {}
    for m in cl_models():
        size = clp_size(m)
        for method in CLP_CFG["methods"]:
            p = {"model": m, "size": size, "method": method, "cfg": 1.0}
            if method in ("cfg", "cca_cfg"):
                key = "cfg_scales" if method == "cfg" else "cca_cfg_scales"
                p["cfg"] = float(clp_per_model(key, m))
            if method in ("cca", "cca_cfg"):
                key = "cca_points" if method == "cca" else "cca_cfg_points"
                pt = clp_per_model(key, m)
                p["beta"], p["lam"] = float(pt["beta"]), float(pt["lam"])
                ft = f"{m}-cca-b{cl_num(pt['beta'])}-l{cl_num(pt['lam'])}"
                finetunes[ft] = {
                    "model": m,
                    "size": size,
                    "beta": p["beta"],
                    "lam": p["lam"],
                }
                p["model_file"] = f"{CLP}/models/{ft}.official.pt"
                name = f"{m}-{CLP_METHOD_NAMES[method]}-b{cl_num(pt['beta'])}-l{cl_num(pt['lam'])}"
            else:
                p["model_file"] = clp_checkpoint(m)
                name = f"{m}-{method}"
            if method in ("cfg", "cca_cfg"):
                name += f"-cfg{cl_num(p['cfg'])}"
            points[name] = p
    return points, finetunes


CLP_POINTS, CLP_FINETUNES = clp_points_and_finetunes()


def clp_json_flag(flag, obj):
    return f"{flag} {as_json(obj)}" if obj else ""


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
            clp_json_flag("--vq-config", CLP_CFG["vq_config"]),
        ]
    )


def clp_launcher(command, nproc):
    """The package command, under torchrun with one process per GPU (or CPU process) if nproc > 1."""
    if nproc == 1:
        return f"guidance-repro {command}"
    return f"torchrun --standalone --nproc_per_node={nproc} -m guidance_repro {command}"


def clp_finetune_args(wildcards, threads):
    ft, f = CLP_FINETUNES[wildcards.lp_ft], CLP_FT
    overrides = CLP_CFG["gpt_overrides"].get(ft["model"], {})
    return " ".join(
        [
            f"--size {ft['size']} --beta {ft['beta']} --lam {ft['lam']}",
            f"--image-size {CLP_CFG['image_size']} --global-batch {f['global_batch']}",
            f"--micro-batch {f['micro_batch']} --lr {f['lr']} --uncond-ratio {f['uncond_ratio']}",
            f"--accumulation-reduce {f['accumulation_reduce']} --precision {f['precision']}",
            f"--parallel {f['parallel']}" if f["parallel"] else "",
            f"--steps {f['steps']}" if f["steps"] else "",
            f"--device {f['device']} --checkpoint-every {f['checkpoint_every']} --seed {f['seed']}",
            f"--threads {max(1, threads // f['nproc'])}",
            clp_json_flag("--model-overrides", overrides),
        ]
    )


def clp_sample_args(wildcards):
    p, s = CLP_POINTS[wildcards.lp_point], CLP_SAMPLING
    tags = [f"--tag method={p['method']}", f"--tag model={p['size']}"]
    tags += [f"--tag {k}={p[k]}" for k in ("beta", "lam") if k in p]
    return " ".join(
        [
            f"--size {p['size']} --cfg {p['cfg']} {' '.join(tags)}",
            f"--image-size {CLP_CFG['image_size']} --eval-size {CLP_CFG['eval_size']}",
            f"--num {s['num_samples']} --num-shards {s['num_shards']} --seed {s['seed']}",
            f"--chunk-size {s['chunk_size']} --batch-size {s['batch_size']}",
            f"--dtype {s['dtype']} --device {s['device']}",
            clp_json_flag("--gpt-config", CLP_CFG["gpt_overrides"].get(p["model"], {})),
            clp_json_flag("--vq-config", CLP_CFG["vq_config"]),
        ]
    )


def clp_official_inputs():
    """The paper tier's local inputs beyond the checkpoints (checked at parse time, named by key)."""
    for key in ("imagenet_train", "inception"):
        path = CLP_CFG[key]
        if not path or not Path(path).exists():
            raise WorkflowError(
                f"config key cca_llamagen.paper.{key}: {'not set' if not path else f'{path} not found'}"
                " (a local path; nothing is downloaded)"
            )


clp_official_inputs()
