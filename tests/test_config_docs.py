"""config/README.md documents every key of the config schema (a missing entry fails here)."""

from __future__ import annotations

import yaml

from conftest import ROOT


def _keys(node: dict, defs: dict, prefix: str = ""):
    if "$ref" in node:
        node = defs[node["$ref"].split("/")[-1]]
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key
        if isinstance(sub, dict):
            yield from _keys(sub, defs, key + ".")


def test_every_schema_key_is_documented():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    readme = (ROOT / "config/README.md").read_text()
    defs = schema.get("$defs", {})
    # The training loop's keys are documented once, as `<trainer>.train.<key>`.
    missing = []
    for key in _keys(schema, defs):
        parts = key.split(".")
        if "train" in parts[:-1]:
            key = "train." + ".".join(parts[parts.index("train") + 1:])
        if f"`{key}`" not in readme:
            missing.append(key)
    assert not missing, f"config/README.md lacks: {sorted(set(missing))}"
