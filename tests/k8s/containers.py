"""The containers of a rendered overlay, what each one runs, and the environment it would get.

Each container's command names a module (`python -m gateway`, `python -m results_service.migrate`, ...); each
module reads one settings class. The environment is resolved the way the kubelet would: `env` values,
`envFrom` ConfigMaps and Secrets, `secretKeyRef`s, and the secret files mounted as volumes (written under a
temporary directory, with the env values that name them rewritten to point there).
"""

from __future__ import annotations

import base64
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

Manifest = dict[str, Any]

SETTINGS_OF_MODULE = {
    "gateway": "gateway.settings:GatewaySettings",
    "ingest_service": "ingest_service.settings:IngestSettings",
    "processor_service": "processor_service.settings:ProcessorSettings",
    "results_service": "results_service.settings:ResultsSettings",
    "results_service.migrate": "results_service.settings:ResultsSettings",
    "results_service.bootstrap_admin": "results_service.settings:ResultsSettings",
    "common.messaging.broker": "common.app.settings:BaseServiceSettings",
}
"""The settings class each runnable module loads (its `load_settings(...)`/`serve(...)` call)."""

PORT_SETTING = {
    "gateway": "gateway_port",
    "ingest_service": "ingest_port",
    "processor_service": "processor_port",
    "results_service": "results_port",
}
"""The settings field holding the HTTP port of each service."""

OPERATOR_SECRETS = {
    "dicomflow-db-app": {"uri": "postgresql://dicomflow:made-by-cnpg@dicomflow-db-rw.dicomflow:5432/dicomflow"},
}
"""Secrets an operator creates at run time (CloudNativePG: `<cluster>-app`), with stand-in values."""


@dataclass(frozen=True)
class Container:
    workload: Manifest
    pod_spec: dict[str, Any]
    spec: dict[str, Any]
    init: bool

    @property
    def label(self) -> str:
        return f"{self.workload['kind']} {self.workload['metadata']['name']}, container {self.spec['name']}"

    @property
    def module(self) -> str:
        command = list(self.spec.get("command") or []) + list(self.spec.get("args") or [])
        if command[:2] != ["python", "-m"] or len(command) < 3:
            raise AssertionError(f"{self.label}: command {command} is not `python -m <module>`")
        return str(command[2])


def pod_spec(workload: Manifest) -> dict[str, Any] | None:
    """The pod template's spec of a Deployment or Job, else None."""
    if workload["kind"] not in {"Deployment", "Job"}:
        return None
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(manifests: list[Manifest]) -> Iterator[Container]:
    """Every container (init containers included) of every Deployment and Job."""
    for workload in manifests:
        spec = pod_spec(workload)
        if spec is None:
            continue
        for item in spec.get("initContainers") or []:
            yield Container(workload, spec, item, init=True)
        for item in spec["containers"]:
            yield Container(workload, spec, item, init=False)


def settings_class(module: str) -> type[BaseSettings]:
    """The settings class `module` reads."""
    if module not in SETTINGS_OF_MODULE:
        raise AssertionError(f"no settings class known for `python -m {module}`: add it to SETTINGS_OF_MODULE")
    module_name, _, class_name = SETTINGS_OF_MODULE[module].partition(":")
    cls: type[BaseSettings] = getattr(importlib.import_module(module_name), class_name)
    return cls


def setting_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable `cls` reads: its fields' names and aliases, upper-case (env_prefix is "")."""
    names = set()
    for name, info in cls.model_fields.items():
        names.add(name.upper())
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


def _find(manifests: list[Manifest], kind: str, name: str) -> Manifest | None:
    return next((m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name), None)


def secret_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    """A Secret's decoded data: from the overlay, or the stand-in of an operator-made one."""
    secret = _find(manifests, "Secret", name)
    if secret is None:
        if name in OPERATOR_SECRETS:
            return OPERATOR_SECRETS[name]
        raise AssertionError(f"Secret {name} is neither in the overlay nor made by an operator")
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    return data | dict(secret.get("stringData") or {})


def config_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    """A ConfigMap's data."""
    config = _find(manifests, "ConfigMap", name)
    if config is None:
        raise AssertionError(f"ConfigMap {name} is not in the overlay")
    return dict(config.get("data") or {})


def environment(container: Container, manifests: list[Manifest], files_root: Path) -> dict[str, str]:
    """The environment `container` gets; its secret volumes are written under `files_root` and env values naming
    a file in one point there instead."""
    env: dict[str, str] = {}
    for source in container.spec.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = config_data(manifests, source["configMapRef"]["name"])
        else:
            data = secret_data(manifests, source["secretRef"]["name"])
        env.update({prefix + key: value for key, value in data.items()})
    for item in container.spec.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            data, key = secret_data(manifests, ref["secretKeyRef"]["name"]), ref["secretKeyRef"]["key"]
        elif "configMapKeyRef" in ref:
            data, key = config_data(manifests, ref["configMapKeyRef"]["name"]), ref["configMapKeyRef"]["key"]
        else:
            raise AssertionError(f"{container.label}: env {item['name']} comes from {sorted(ref)}, not handled")
        if key not in data:
            raise AssertionError(f"{container.label}: env {item['name']} names key {key!r}, absent from its source")
        env[item["name"]] = data[key]
    mounts = _write_secret_volumes(container, manifests, files_root)
    for name, value in env.items():
        for mount_path, local in mounts.items():
            if value.startswith(mount_path + "/"):
                env[name] = str(local) + value[len(mount_path) :]
    return env


def _write_secret_volumes(container: Container, manifests: list[Manifest], root: Path) -> dict[str, Path]:
    volumes = {volume["name"]: volume for volume in container.pod_spec.get("volumes") or []}
    written = {}
    for mount in container.spec.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise AssertionError(f"{container.label}: volumeMount {mount['name']} names no volume of the pod")
        if "secret" not in volume:
            continue
        data = secret_data(manifests, volume["secret"]["secretName"])
        items = volume["secret"].get("items") or [{"key": key, "path": key} for key in data]
        local = root / container.spec["name"] / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        for item in items:
            if item["key"] not in data:
                raise AssertionError(f"{container.label}: secret volume {mount['name']} names absent key {item['key']}")
            (local / item["path"]).write_text(data[item["key"]])
        written[mount["mountPath"]] = local
    return written
