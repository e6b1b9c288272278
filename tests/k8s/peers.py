"""The pods (and one address outside the cluster) that exist where an overlay runs, for the NetworkPolicy check:
the overlay's own workloads, the pods its operators create for its custom resources (with the labels those
operators put on them: CloudNativePG `cnpg.io/cluster`, RabbitMQ Cluster Operator `app.kubernetes.io/name`,
cert-manager's HTTP-01 solver), the cluster's own (DNS, the ingress controller, Prometheus, KEDA, the operators),
and strangers that must reach nothing."""

from __future__ import annotations

from typing import Any

from tests.k8s.netpol import Peer, Port, address, pod

Manifest = dict[str, Any]


def _objects(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def cluster_peers(manifests: list[Manifest], namespace: str) -> list[Peer]:
    """The pods (and one address outside) that exist where this overlay runs: its own, the operators' ones it
    asks for, the cluster's (DNS, ingress controller, Prometheus, KEDA, operators) and strangers."""
    peers = []
    for workload in manifests:
        if workload["kind"] in {"Deployment", "Job"}:
            template = workload["spec"]["template"]
            ports = [
                Port(p["containerPort"], p.get("protocol", "TCP"), p.get("name", ""))
                for c in template["spec"]["containers"]
                for p in c.get("ports") or []
            ]
            peers.append(
                pod(
                    template["metadata"]["labels"]["app.kubernetes.io/component"],
                    namespace,
                    template["metadata"]["labels"],
                    ports,
                )
            )
    for cluster in _objects(manifests, "Cluster").values():
        labels = {"cnpg.io/cluster": cluster["metadata"]["name"], "cnpg.io/podRole": "instance"}
        peers.append(pod("postgres", namespace, labels, [Port(5432), Port(8000), Port(9187)]))
    for cluster in _objects(manifests, "RabbitmqCluster").values():
        labels = {"app.kubernetes.io/name": cluster["metadata"]["name"], "app.kubernetes.io/component": "rabbitmq"}
        ports = [Port(5672), Port(15672), Port(15692), Port(4369), Port(25672)]
        peers.append(pod("rabbitmq", namespace, labels, ports))
    if _objects(manifests, "Issuer"):
        peers.append(pod("acme-solver", namespace, {"acme.cert-manager.io/http01-solver": "true"}, [Port(8089)]))
    return [
        *peers,
        pod("outside", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, [Port(443)]),
        pod("dns", "kube-system", {"k8s-app": "kube-dns"}, [Port(53, "UDP"), Port(53)]),
        pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, [Port(9090)]),
        pod("keda", "keda", {"app": "keda-operator"}),
        pod("cnpg-operator", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}),
        pod("rabbitmq-operator", "rabbitmq-system", {"app.kubernetes.io/name": "rabbitmq-cluster-operator"}),
        pod("stranger", namespace, {"run": "debug"}, [Port(8080)]),
        pod("other-namespace", "elsewhere", {"app": "other"}, [Port(8080)]),
        address("internet", "203.0.113.10", [Port(443), Port(80), Port(5432), Port(5672)]),
    ]
