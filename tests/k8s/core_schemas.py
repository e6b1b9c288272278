"""Validation against the Kubernetes OpenAPI schemas that `kubernetes-validate` bundles, with the schemas
loaded once per kind (the library's own `validate` reloads the 2 MB definitions for every object).

Strict schemas: an unknown field fails, as `kubectl apply --validate=strict` would.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
from kubernetes_validate import utils
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.32.0"
"""The oldest Kubernetes the manifests are written for (k8s/README.md): every field used exists there."""

_SCHEMA_DIR = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"


class NoCoreSchema(LookupError):
    """The kind is not one of Kubernetes' own (a custom resource)."""


@functools.cache
def _definitions() -> Resource[Any]:
    return Resource.from_contents(utils.schema_contents(f"{_SCHEMA_DIR}/_definitions.json", KUBERNETES_VERSION))


@functools.cache
def _kind_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{_SCHEMA_DIR}/{kind.lower()}-{group}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        raise NoCoreSchema(f"{api_version} {kind}") from None
    registry = Resource.from_contents(schema) @ (_definitions() @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definition_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"{_DEFINITIONS_ID}#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=_definitions() @ Registry())


def has_core_schema(obj: dict[str, Any]) -> bool:
    """True for Kubernetes' own kinds."""
    try:
        _kind_validator(obj["apiVersion"], obj["kind"])
    except NoCoreSchema:
        return False
    return True


def core_errors(obj: dict[str, Any]) -> list[str]:
    """What is wrong with a core object, one line per problem (empty: valid)."""
    validator = _kind_validator(obj["apiVersion"], obj["kind"])
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(obj)]


def definition_errors(value: Any, definition: str) -> list[str]:
    """What is wrong with `value` as the core type `definition` (e.g. io.k8s.api.core.v1.Affinity), which custom
    resources embed."""
    validator = _definition_validator(definition)
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(value)]
