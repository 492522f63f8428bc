"""The schema's `model` blocks (workflow/schemas/models.schema.yaml) list exactly the keys the code
takes: the fields of the dataclass or defaults dict each block feeds, so the two cannot drift.
Every `model` block of every config is one of them, and every config passes the schema."""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import yaml
from conftest import ROOT
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from guidance_repro.config_schema import first_error, property_keys, schema_at
from guidance_repro.metrics.toy_clip import CLIP_DEFAULTS
from guidance_repro.metrics.toy_composition import COMPOSITION_DEFAULTS
from guidance_repro.metrics.toy_evaluators import CLASSIFIER_DEFAULTS
from guidance_repro.llamagen.model import GPTConfig
from guidance_repro.var.msvq import MSVQConfig
from guidance_repro.star.model import STARConfig
from guidance_repro.var.model import VARConfig
from guidance_repro.nn.toy_conv import VQConfig

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
CONFIGS = [DEFAULT_CONFIG, ROOT / ".test" / "config" / "config.yaml",
           *sorted((ROOT / "config" / "paper").glob("*.yaml"))]


def names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


# The tokenizer tasks (vq-tokenizer, msvq-tokenizer) take their block's keys flat and pop these two
# before building the config.
TOKENIZER_TASK_KEYS = {"l1_weight", "train_subset"}
# `size`: a named size that build_config expands (GPTConfig and VARConfig have SIZES).
# Left out: what the rules set themselves, over the block: the depth of each cca_var model (from
# cca_var.depths), the position encoding of each STAR model, and the STAR tokenizer's scales,
# image size and RGB input (from star.high).
BLOCK_KEYS = {
    "evaluators.classifier.model": set(CLASSIFIER_DEFAULTS),
    "evaluators.composition.model": set(COMPOSITION_DEFAULTS),
    "evaluators.judge_clip.model": set(CLIP_DEFAULTS),
    "cca_llamagen.tokenizer.model": names(VQConfig) | TOKENIZER_TASK_KEYS,
    "cca_llamagen.models.0": names(GPTConfig) | {"size", "name", "replicates"},
    "cca_llamagen.autoguide.model": names(GPTConfig) | {"size"},
    "cca_var.tokenizer.model": names(MSVQConfig) | TOKENIZER_TASK_KEYS,
    "cca_var.model": names(VARConfig) - {"depth"} | {"size"},
    "star.text_encoder.model": set(CLIP_DEFAULTS),
    "star.tokenizer.model": (names(MSVQConfig) | TOKENIZER_TASK_KEYS)
                            - {"patch_nums", "image_size", "in_channels"},
    "star.model": names(STARConfig) - {"positions"},
}
# The CLIP blocks' towers are open_clip's own config dataclasses (toy_clip.build_clip).
NESTED_KEYS = {f"{clip}.{tower}": names(cls)
               for clip in ("evaluators.judge_clip.model", "star.text_encoder.model")
               for tower, cls in (("vision", CLIPVisionCfg), ("text", CLIPTextCfg))}


@pytest.mark.parametrize("key", sorted({**BLOCK_KEYS, **NESTED_KEYS}))
def test_schema_lists_exactly_the_fields_the_code_takes(key):
    block = schema_at(SCHEMA, key)
    assert block.get("additionalProperties") is False, key
    assert set(block["properties"]) == {**BLOCK_KEYS, **NESTED_KEYS}[key]


def test_every_model_block_of_the_schema_is_checked():
    in_schema = {k for k in property_keys(SCHEMA) if k.endswith(".model")}
    assert in_schema | {"cca_llamagen.models.0"} == set(BLOCK_KEYS)


def _model_blocks(node, prefix=""):
    """Dotted paths of every `model` mapping and every entry of a `models` list in a config."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if k == "model":
                yield key
            if k == "models" and isinstance(v, list) and v:
                yield f"{key}.0"  # every entry of the list has the same schema
            yield from _model_blocks(v, key + ".")


def _merged(path):
    """A config as Snakemake sees it: the paper configs are given with --configfile on top of
    config/config.yaml (the Snakefile's configfile), which they update section by section."""
    cfg = yaml.safe_load(path.read_text())
    if path == DEFAULT_CONFIG or "paper" not in path.parts:
        return cfg
    base = yaml.safe_load(DEFAULT_CONFIG.read_text())

    def update(into, new):
        for k, v in new.items():
            if isinstance(v, dict) and isinstance(into.get(k), dict):
                update(into[k], v)
            else:
                into[k] = copy.deepcopy(v)
    update(base, cfg)
    return base


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_passes_and_its_model_blocks_are_checked(path):
    assert first_error(_merged(path), SCHEMA) is None
    blocks = set(_model_blocks(yaml.safe_load(path.read_text())))
    assert blocks <= set(BLOCK_KEYS), sorted(blocks - set(BLOCK_KEYS))

