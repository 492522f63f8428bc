"""The config schema, split over several YAML files (workflow/schemas/): loading and validating it.

`config.schema.yaml` is the entry point; each slice's section lives in its own file beside it and
is reached by a relative `$ref` (`cca_var.schema.yaml`, `defs.schema.yaml#/$defs/train`). A plain
`jsonschema.Draft202012Validator(schema)` cannot follow those references: `validator(path)` gives
one with a registry that reads them from the local files, as `snakemake.utils.validate` does.
The defaults are still filled by Snakemake's validate; this module only checks and walks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse
from urllib.request import url2pathname

import jsonschema
import yaml
from referencing import Registry, Resource

if TYPE_CHECKING:
    from referencing._core import Resolver


def _read(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _retrieve(uri: str) -> Resource:
    """A referenced schema file, from its file:// URI."""
    return Resource.from_contents(_read(Path(url2pathname(urlparse(uri).path))))


def load_schema(path: str | Path) -> dict:
    """The entry-point schema, with `$id` set to its file URI so that relative refs resolve."""
    path = Path(path).resolve()
    schema = _read(path)
    schema["$id"] = path.as_uri()
    return schema


def registry() -> Registry:
    """A registry that retrieves referenced schema files from the local disk."""
    return Registry(retrieve=_retrieve)


def validator(path: str | Path) -> jsonschema.Draft202012Validator:
    """A validator of the whole config (every slice file), without filling defaults."""
    return jsonschema.Draft202012Validator(load_schema(path), registry=registry())


def first_error(cfg: dict, path: str | Path) -> str | None:
    """The most relevant error as one line naming the config key (None when the config is valid)."""
    error = jsonschema.exceptions.best_match(validator(path).iter_errors(cfg))
    if error is None:
        return None
    key = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        # A misspelt key: name it with its full path and the keys the block takes, as the code's
        # own check does (nn/config.py), rather than jsonschema's "Additional properties ...".
        known = error.schema.get("properties", {})
        unknown = sorted(k for k in error.instance if k not in known)
        if unknown:
            full = f"{key}.{unknown[0]}" if key else unknown[0]
            return f"config key {full}: unknown key (known: {', '.join(sorted(known))})"
    return f"config key {key or '<top level>'}: {error.message}"


def resolve(node: dict, resolver: Resolver) -> tuple[dict, Resolver]:
    """`node` with its `$ref` followed (siblings of the `$ref` win), and the resolver to go on with."""
    while "$ref" in node:
        resolved = resolver.lookup(node["$ref"])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node, resolver = {**resolved.contents, **siblings}, resolved.resolver
    return node, resolver


def property_keys(path: str | Path) -> Iterator[str]:
    """Every dotted key reachable through `properties` (references followed into the slice files)."""
    schema = load_schema(path)
    root = registry().resolver_with_root(Resource.from_contents(schema))

    def walk(node: dict, resolver: Resolver, prefix: str) -> Iterator[str]:
        node, resolver = resolve(node, resolver)
        for name, sub in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            yield key
            if isinstance(sub, dict):
                yield from walk(sub, resolver, key + ".")

    yield from walk(schema, root, "")


def schema_at(path: str | Path, key: str) -> dict:
    """The subschema of a dotted config key, references followed; a number steps into a list's
    `items` (`cca_llamagen.models.0`). Raises KeyError for a key the schema does not have."""
    schema = load_schema(path)
    node, resolver = resolve(schema, registry().resolver_with_root(Resource.from_contents(schema)))
    for part in key.split("."):
        node = node["items"] if part.isdigit() else node["properties"][part]
        node, resolver = resolve(node, resolver)
    return node
