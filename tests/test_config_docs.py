"""config/README.md documents every key of the config schema (a missing entry fails here)."""

from __future__ import annotations

from conftest import ROOT

from guidance_repro.config_schema import property_keys


def test_every_schema_key_is_documented():
    # property_keys follows every $ref, into the slice files (workflow/schemas/<slice>.schema.yaml).
    keys = list(property_keys(ROOT / "workflow/schemas/config.schema.yaml"))
    assert "cca_llamagen.cca.beta_mode" in keys and "star.low.image_size" in keys
    readme = (ROOT / "config/README.md").read_text()
    # The training loop's keys are documented once, as `<trainer>.train.<key>`. The fields of a
    # `model` block are the dataclass's its row names (workflow/schemas/models.schema.yaml;
    # test_config_models.py keeps the two equal), so the block's row documents them.
    missing = []
    for key in keys:
        parts = key.split(".")
        if "train" in parts[:-1]:
            key = "train." + ".".join(parts[parts.index("train") + 1:])
        elif "model" in parts[:-1]:
            key = ".".join(parts[:parts.index("model") + 1])
        if f"`{key}`" not in readme:
            missing.append(key)
    assert not missing, f"config/README.md lacks: {sorted(set(missing))}"
