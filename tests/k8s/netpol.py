"""Which connections a set of NetworkPolicies allows, computed the way Kubernetes defines it.

A connection from pod A to port P of pod B is allowed when A's egress allows it (no egress policy selects A,
or a rule of one that does matches B and P) and B's ingress allows it (likewise). A peer entry of a rule
matches a pod by `podSelector` (in the policy's namespace unless `namespaceSelector` is given) and/or
`namespaceSelector`; an `ipBlock` matches only addresses outside the cluster here; a rule with no peers, or no
ports, matches every peer, or every port. The test names the pods that exist (`Peer`) and compares the allowed
edges between them with the architecture's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True)
class Peer:
    """A pod (namespace and labels) or an address outside the cluster, and the ports it listens on."""

    name: str
    namespace: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    ip: str = ""
    ports: tuple[Port, ...] = field(default=())

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def pod(name: str, namespace: str, labels: dict[str, str], ports: Iterable[Port] = ()) -> Peer:
    """A pod peer."""
    return Peer(name, namespace, tuple(sorted(labels.items())), "", tuple(ports))


def address(name: str, ip: str, ports: Iterable[Port]) -> Peer:
    """An address outside the cluster."""
    return Peer(name, ip=ip, ports=tuple(ports))


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels; an empty selector matches all."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(entry: dict[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in entry:
        if not peer.ip:
            return False
        ip = ipaddress.ip_address(peer.ip)
        block = entry["ipBlock"]
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])
    if peer.ip:
        return False
    if "namespaceSelector" in entry:
        if not selector_matches(entry["namespaceSelector"], peer.namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return selector_matches(entry.get("podSelector"), peer.label_map)


def _port_matches(entries: list[dict[str, Any]] | None, port: Port) -> bool:
    if not entries:
        return True
    for entry in entries:
        if entry.get("protocol", "TCP") != port.protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if wanted == port.name:
                return True
            continue
        if wanted <= port.number <= entry.get("endPort", wanted):
            return True
    return False


class PolicySet:
    """The NetworkPolicies of one rendered overlay."""

    def __init__(self, manifests: Iterable[Manifest]) -> None:
        self.policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]

    def _selecting(self, peer: Peer, direction: str) -> list[Manifest]:
        if peer.ip:
            return []
        return [
            policy
            for policy in self.policies
            if policy["metadata"]["namespace"] == peer.namespace
            and direction in policy["spec"].get("policyTypes", ["Ingress"])
            and selector_matches(policy["spec"].get("podSelector"), peer.label_map)
        ]

    def restricted(self, peer: Peer, direction: str) -> bool:
        """Whether any policy limits `peer`'s traffic in `direction` (`Ingress` or `Egress`)."""
        return bool(self._selecting(peer, direction))

    def _direction_allows(self, subject: Peer, other: Peer, port: Port, direction: str) -> bool:
        policies = self._selecting(subject, direction)
        if not policies:
            return True
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if peers and not any(_peer_matches(entry, namespace, other) for entry in peers):
                    continue
                if _port_matches(rule.get("ports"), port):
                    return True
        return False

    def allows(self, source: Peer, target: Peer, port: Port) -> bool:
        """Whether a connection from `source` to `target`'s `port` is allowed."""
        return self._direction_allows(source, target, port, "Egress") and self._direction_allows(
            target, source, port, "Ingress"
        )

    def edges(self, peers: Iterable[Peer]) -> set[tuple[str, str, str]]:
        """Every allowed (source, target, "port/protocol") among `peers` that the policies decide: the source's
        egress or the target's ingress is restricted (two unrestricted ends are outside this deployment's say)."""
        peers = list(peers)
        found = set()
        for source in peers:
            for target in peers:
                if not (self.restricted(source, "Egress") or self.restricted(target, "Ingress")):
                    continue
                for port in target.ports:
                    if self.allows(source, target, port):
                        found.add((source.name, target.name, f"{port.number}/{port.protocol}"))
        return found
