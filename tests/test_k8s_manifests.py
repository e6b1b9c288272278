"""The Kubernetes manifests (k8s/), checked offline: every overlay renders with `kubectl kustomize`, every object
validates (Kubernetes' OpenAPI schemas for core kinds, models of the operators' APIs for custom resources), and
the rules hold: probes on routes the services serve, requests and limits, non-root read-only pods without
privileges, tagged images, environment variables that are real settings with valid values, NetworkPolicies that
allow exactly the architecture's edges, and autoscaling figures that follow from the measured processing cost.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

import pytest

from common.messaging.broker import TopologyNames
from tests.k8s.containers import (
    PORT_SETTING,
    Container,
    containers,
    environment,
    secret_data,
    setting_names,
    settings_class,
)
from tests.k8s.core_schemas import KUBERNETES_VERSION, core_errors, has_core_schema
from tests.k8s.netpol import PolicySet
from tests.k8s.operator_models import MODELS
from tests.k8s.peers import cluster_peers
from tests.k8s.render import K8S, KubectlMissing, Manifest, render_all
from tests.k8s.routes import get_paths

NAMESPACE = "dicomflow"
SERVICES = {
    "gateway": "gateway",
    "ingest": "ingest_service",
    "processor": "processor_service",
    "results": "results_service",
}
"""Deployment name -> the service it runs."""

# Measured in bench/README.md, "DICOM pipeline" (after bea3c8c; 700 files of 638 MB, 2 CPUs).
PROCESSING_FILES_PER_S = 31.5
"""One processor, PROCESSOR_CONCURRENCY=2 on 2 CPUs, until all `done`."""
ACCEPT_FILES_PER_S = 124.0
"""The door (one gateway, ingest and results_service), new bytes."""
MEAN_FILE_BYTES = 638e6 / 700
BACKLOG_SECONDS_PER_POD = 10.0
"""The most work (in seconds) a processor's share of the backlog may hold before KEDA adds a pod."""


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    try:
        return render_all()
    except KubectlMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def _objects(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def _all_containers(rendered: dict[str, list[Manifest]]) -> list[tuple[str, Container]]:
    return [(overlay, c) for overlay, manifests in rendered.items() for c in containers(manifests)]


def test_every_overlay_renders_the_four_services_the_setup_job_and_their_policies(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, manifests in rendered.items():
        assert set(_objects(manifests, "Deployment")) == set(SERVICES), overlay
        assert set(_objects(manifests, "Job")) == {"setup"}, overlay
        assert set(_objects(manifests, "PodDisruptionBudget")) == set(SERVICES), overlay
        assert {"gateway", "ingest", "results"} <= set(_objects(manifests, "Service")), overlay
        assert {"default-deny-ingress", "default-deny-egress"} <= set(_objects(manifests, "NetworkPolicy")), overlay
        assert set(_objects(manifests, "ServiceAccount")) == {"dicomflow"}, overlay
    production = rendered["production"]
    assert set(_objects(production, "Cluster")) == {"dicomflow-db"}
    assert set(_objects(production, "RabbitmqCluster")) == {"dicomflow-mq"}
    assert set(_objects(production, "ScaledObject")) == {"processor"}
    assert set(_objects(production, "HorizontalPodAutoscaler")) == {"gateway", "ingest"}
    assert set(_objects(production, "Ingress")) == {"dicomflow"}


def test_every_object_lives_in_the_dicomflow_namespace(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, manifests in rendered.items():
        outside = [
            f"{m['kind']} {m['metadata']['name']}"
            for m in manifests
            if m["kind"] != "Namespace" and m["metadata"].get("namespace") != NAMESPACE
        ]
        assert not outside, f"{overlay}: not in namespace {NAMESPACE}: {outside}"


def test_core_objects_validate_against_the_kubernetes_schemas(rendered: dict[str, list[Manifest]]) -> None:
    problems = [
        f"{overlay}: {m['kind']} {m['metadata']['name']}: {error}"
        for overlay, manifests in rendered.items()
        for m in manifests
        if has_core_schema(m)
        for error in core_errors(m)
    ]
    assert not problems, f"invalid for Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(problems)


def test_custom_resources_validate_against_their_operators_models(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, manifests in rendered.items():
        for m in manifests:
            if has_core_schema(m):
                continue
            model = MODELS.get((m["apiVersion"], m["kind"]))
            assert model is not None, f"{overlay}: {m['apiVersion']} {m['kind']} has no model in operator_models.py"
            model.model_validate(m)


def test_a_misspelt_custom_resource_field_fails_its_model(rendered: dict[str, list[Manifest]]) -> None:
    scaled = _objects(rendered["production"], "ScaledObject")["processor"]
    misspelt = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}}
    with pytest.raises(ValueError, match="maxReplicas"):
        MODELS[("keda.sh/v1alpha1", "ScaledObject")].model_validate(misspelt)


def test_the_setup_job_runs_migrations_topology_then_the_first_admin_one_pod_at_a_time(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, manifests in rendered.items():
        job = _objects(manifests, "Job")["setup"]
        spec = job["spec"]["template"]["spec"]
        steps = [c["command"][2] for c in [*spec["initContainers"], *spec["containers"]]]
        assert steps == ["results_service.migrate", "common.messaging.broker", "results_service.bootstrap_admin"], (
            overlay
        )
        assert job["spec"].get("parallelism", 1) == 1 and job["spec"].get("completions", 1) == 1, overlay
        assert spec["restartPolicy"] == "Never", overlay


def test_every_container_has_cpu_and_memory_requests_and_limits(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, container in _all_containers(rendered):
        resources = container.spec.get("resources") or {}
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound) or {}), f"{overlay}: {container.label}: {bound}"


def test_every_pod_runs_as_non_root_with_a_read_only_root_and_no_privileges(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, container in _all_containers(rendered):
        where = f"{overlay}: {container.label}"
        pod_security = container.pod_spec.get("securityContext") or {}
        assert pod_security.get("runAsNonRoot") is True, where
        assert pod_security.get("runAsUser") == 10001 and pod_security.get("runAsGroup") == 10001, where
        assert pod_security.get("fsGroup") == 10001, where
        assert container.pod_spec.get("automountServiceAccountToken") is False, where
        assert not container.pod_spec.get("hostNetwork") and not container.pod_spec.get("hostPID"), where
        security = container.spec.get("securityContext") or {}
        assert security.get("allowPrivilegeEscalation") is False, where
        assert security.get("readOnlyRootFilesystem") is True, where
        assert security.get("privileged") is not True, where
        assert security.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not security.get("capabilities", {}).get("add"), where
        mounts = {mount["mountPath"] for mount in container.spec.get("volumeMounts") or []}
        assert "/tmp" in mounts, f"{where}: /tmp is not writable on a read-only root filesystem"


def test_images_are_tagged_never_latest_and_from_a_registry_in_production(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, container in _all_containers(rendered):
        image = container.spec["image"]
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag, f"{overlay}: {container.label}: untagged image {image}"
        assert tag != "latest", f"{overlay}: {container.label}: {image}"
        if overlay == "production":
            assert "." in name.split("/")[0], f"{container.label}: {image} names no registry"


def test_probes_ask_routes_the_service_serves_on_the_port_it_listens_on(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    routes = {service: get_paths(service) for service in SERVICES.values()}
    for overlay, container in _all_containers(rendered):
        if container.workload["kind"] != "Deployment":
            continue
        service = container.module
        assert service == SERVICES[container.workload["metadata"]["name"]], container.label
        ports = {port["name"]: port["containerPort"] for port in container.spec["ports"]}
        env = environment(container, rendered[overlay], tmp_path / overlay)
        with mock.patch.dict(os.environ, env, clear=True):
            listens_on = getattr(settings_class(service)(), PORT_SETTING[service])
        for kind, wanted in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
            probe = container.spec.get(kind)
            if probe is None and wanted is None:
                continue
            where = f"{overlay}: {container.label}: {kind}"
            assert probe is not None, f"{where} is missing"
            path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
            assert wanted is None or path == wanted, f"{where} asks {path}, not {wanted}"
            assert path in routes[service], f"{where}: {service} serves no GET {path}"
            assert ports.get(port, port) == listens_on, f"{where}: port {port} is not {service}'s port {listens_on}"


def test_every_environment_variable_is_a_setting_of_the_service_that_gets_it(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    unknown = []
    for overlay, container in _all_containers(rendered):
        names = set(environment(container, rendered[overlay], tmp_path / overlay))
        stray = names - setting_names(settings_class(container.module))
        unknown += [f"{overlay}: {container.label}: {name}" for name in sorted(stray)]
    assert not unknown, "not a setting of the service (a typo, or a setting that no longer exists):\n" + "\n".join(
        unknown
    )


def test_every_container_environment_is_valid_for_its_settings(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    for overlay, container in _all_containers(rendered):
        env = environment(container, rendered[overlay], tmp_path / overlay)
        with mock.patch.dict(os.environ, env, clear=True):
            settings: Any = settings_class(container.module)()  # raises on any invalid value or missing secret
        if overlay == "production" and container.workload["kind"] == "Deployment":
            assert settings.host == "0.0.0.0", f"{container.label}: must listen on the pod's address"
        if container.module == "processor_service":
            cpus = float(container.spec["resources"]["requests"]["cpu"])
            assert cpus == settings.processor_concurrency, f"{overlay}: one CPU per worker process, as measured"


_DNS = {(source, "dns", port) for source in SERVICES | {"setup": ""} for port in ("53/UDP", "53/TCP")}
BASE_EDGES = {
    ("outside", "gateway", "8080/TCP"),
    ("gateway", "ingest", "8082/TCP"),
    ("gateway", "results", "8081/TCP"),
    ("ingest", "results", "8081/TCP"),
    ("prometheus", "gateway", "8080/TCP"),
    ("prometheus", "ingest", "8082/TCP"),
    ("prometheus", "processor", "8083/TCP"),
    ("prometheus", "results", "8081/TCP"),
    *_DNS,
}
"""The architecture (docs/architecture.md) where PostgreSQL and RabbitMQ are outside the cluster (local)."""
PRODUCTION_EDGES = BASE_EDGES | {
    # The broker: every dicomflow process talks AMQP (the gateway for the live feed's P.events).
    ("gateway", "rabbitmq", "5672/TCP"),
    ("ingest", "rabbitmq", "5672/TCP"),
    ("processor", "rabbitmq", "5672/TCP"),
    ("results", "rabbitmq", "5672/TCP"),
    ("setup", "rabbitmq", "5672/TCP"),
    ("keda", "rabbitmq", "5672/TCP"),
    ("rabbitmq-operator", "rabbitmq", "15672/TCP"),
    ("prometheus", "rabbitmq", "15692/TCP"),
    *{("rabbitmq", "rabbitmq", port) for port in ("5672/TCP", "15672/TCP", "15692/TCP", "4369/TCP", "25672/TCP")},
    # PostgreSQL: results_service (and its migrations) only.
    ("results", "postgres", "5432/TCP"),
    ("setup", "postgres", "5432/TCP"),
    ("postgres", "postgres", "5432/TCP"),
    ("postgres", "postgres", "8000/TCP"),
    ("cnpg-operator", "postgres", "5432/TCP"),
    ("cnpg-operator", "postgres", "8000/TCP"),
    ("prometheus", "postgres", "9187/TCP"),
    # The blob store, S3 over HTTPS.
    ("ingest", "internet", "443/TCP"),
    ("processor", "internet", "443/TCP"),
    ("results", "internet", "443/TCP"),
    # cert-manager's HTTP-01 challenge through the ingress controller.
    ("outside", "acme-solver", "8089/TCP"),
}


@pytest.mark.parametrize(("overlay", "expected"), [("local", BASE_EDGES), ("production", PRODUCTION_EDGES)])
def test_network_policies_allow_exactly_the_architecture_edges(
    rendered: dict[str, list[Manifest]], overlay: str, expected: set[tuple[str, str, str]]
) -> None:
    manifests = rendered[overlay]
    allowed = PolicySet(manifests).edges(cluster_peers(manifests, NAMESPACE))
    assert allowed == expected, (
        f"allowed but not in the architecture: {sorted(allowed - expected)}\n"
        f"in the architecture but not allowed: {sorted(expected - allowed)}"
    )


def test_processor_autoscaling_follows_the_measured_processing_cost(rendered: dict[str, list[Manifest]]) -> None:
    production = rendered["production"]
    spec = _objects(production, "ScaledObject")["processor"]["spec"]
    triggers = {trigger["name"]: trigger["metadata"] for trigger in spec["triggers"]}
    per_pod = float(triggers["jobs"]["value"])
    assert per_pod / PROCESSING_FILES_PER_S <= BACKLOG_SECONDS_PER_POD
    assert per_pod / PROCESSING_FILES_PER_S >= BACKLOG_SECONDS_PER_POD / 2, "so small a target scales for nothing"
    ingest_max = _objects(production, "HorizontalPodAutoscaler")["ingest"]["spec"]["maxReplicas"]
    assert spec["maxReplicaCount"] == math.ceil(ingest_max * ACCEPT_FILES_PER_S / PROCESSING_FILES_PER_S)
    assert spec["minReplicaCount"] >= 2, "one processor per node survives a node's loss"
    with mock.patch.dict(os.environ, {}, clear=True):
        large_job_bytes = settings_class("ingest_service").model_fields["large_job_bytes"].default
    seconds_per_large_job = large_job_bytes / (PROCESSING_FILES_PER_S * MEAN_FILE_BYTES)
    assert float(triggers["large-jobs"]["value"]) * seconds_per_large_job <= 3 * BACKLOG_SECONDS_PER_POD


def test_scalers_target_existing_deployments_and_the_real_queue_names(rendered: dict[str, list[Manifest]]) -> None:
    production = rendered["production"]
    deployments = _objects(production, "Deployment")
    scaled = _objects(production, "ScaledObject")["processor"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "processor"
    prefix = _objects_data(production, "dicomflow-common")["AMQP_PREFIX"]
    names = TopologyNames(prefix)
    assert {t["metadata"]["queueName"] for t in scaled["triggers"]} == {names.jobs, names.jobs_large}
    processor = deployments["processor"]["spec"]["template"]["spec"]["containers"][0]
    assert all(t["metadata"]["hostFromEnv"] in {e["name"] for e in processor["env"]} for t in scaled["triggers"])
    for hpa in _objects(production, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for name in ("gateway", "ingest", "processor"):
        assert "replicas" not in deployments[name]["spec"], f"{name}'s replica count belongs to its autoscaler"


def _objects_data(manifests: list[Manifest], prefix: str) -> dict[str, str]:
    config = next(m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith(prefix))
    return dict(config["data"])


def test_ingress_serves_only_the_gateway_over_tls_from_an_issuer_of_the_overlay(
    rendered: dict[str, list[Manifest]],
) -> None:
    production = rendered["production"]
    ingress = _objects(production, "Ingress")["dicomflow"]
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"gateway"}
    hosts = {h for r in ingress["spec"]["rules"] for h in [r["host"]]}
    assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert ingress["metadata"]["annotations"]["cert-manager.io/issuer"] in _objects(production, "Issuer")
    assert not _objects(rendered["local"], "Ingress")


def test_services_select_their_deployments_pods_and_named_ports(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, manifests in rendered.items():
        for name, service in _objects(manifests, "Service").items():
            selected = [
                d
                for d in _objects(manifests, "Deployment").values()
                if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert [d["metadata"]["name"] for d in selected] == [name], f"{overlay}: Service {name}"
            port_names = {p["name"] for p in selected[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
            assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names, f"{overlay}: Service {name}"


def test_production_rabbitmq_user_is_the_one_in_the_services_amqp_url(rendered: dict[str, list[Manifest]]) -> None:
    production = rendered["production"]
    url = urlsplit(secret_data(production, "dicomflow-amqp")["amqp_url"])
    user = secret_data(production, "dicomflow-mq-default-user")
    conf = dict(
        line.split("=", 1) for line in user["default_user.conf"].replace(" = ", "=").splitlines() if "=" in line
    )
    assert unquote(url.username or "") == user["username"] == conf["default_user"]
    assert unquote(url.password or "") == user["password"] == conf["default_pass"]
    cluster = _objects(production, "RabbitmqCluster")["dicomflow-mq"]
    assert url.hostname == f"{cluster['metadata']['name']}.{NAMESPACE}.svc"
    assert cluster["spec"]["secretBackend"]["externalSecret"]["name"] == "dicomflow-mq-default-user"


def test_only_example_secrets_are_in_the_repository_and_real_ones_are_ignored() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--", "k8s/overlays"],
        cwd=K8S.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    secret_files = [path for path in listed if "/secrets/" in path]
    assert secret_files, "the overlays' secret examples are missing"
    assert all(re.search(r"(\.example|/README\.md)$", path) for path in secret_files), secret_files
    for example in secret_files:
        if example.endswith(".example"):
            real = example.removesuffix(".example")
            ignored = subprocess.run(["git", "check-ignore", "-q", real], cwd=K8S.parent, check=False)
            assert ignored.returncode == 0, f"{real} is not git-ignored: a real secret could be committed"
