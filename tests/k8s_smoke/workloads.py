"""A rendered overlay's Jobs and Deployments as the containers this host runs: what a kubelet would work out.

Each container gets its argv (the manifest's command and args over the image's entrypoint and cmd), its
environment (the image's, then `envFrom` ConfigMaps and Secrets, then `env` with values, ConfigMap and Secret
keys, the downward API's pod name and namespace, `$(VAR)` expanded), its user, read-only root, working
directory, volumes (hostPath, emptyDir, Secret and ConfigMap, as host directories) and readiness probe.

Pods share this host's network, so the smoke changes the overlay in three declared ways only: every container
port of every replica gets a free 127.0.0.1 port (two processors cannot both bind 8083, and a running
deployment keeps its ports), `127.0.0.1:<port>` in any value follows it; DATABASE_URL names a fresh database
and AMQP_PREFIX a fresh prefix; hostPath volumes are directories of the smoke's own.
"""

from __future__ import annotations

import base64
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ImageConfig:
    """What the image says about how to run it (`podman image inspect`)."""

    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str
    user: str


@dataclass(frozen=True)
class Probe:
    """An httpGet probe on 127.0.0.1, and how long a kubelet would wait for it."""

    url: str
    timeout: float


@dataclass
class Container:
    """One container of one pod, ready to run."""

    pod: str
    name: str
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    read_only_root: bool
    workdir: str
    mounts: list[tuple[Path, str, bool]]  # (host path, container path, read-only)
    readiness: Probe | None = None
    liveness: Probe | None = None
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port


@dataclass
class Pod:
    """One replica of a Deployment, or a Job's pod: init containers run one after the other, then the others."""

    name: str
    owner: str  # "Deployment/processor", "Job/setup"
    init_containers: list[Container]
    containers: list[Container]
    grace_seconds: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.get("kind") == kind]


def _data(obj: Manifest) -> dict[str, str]:
    """A ConfigMap's or Secret's values as text (Secrets' `data` is base64)."""
    values = {k: str(v) for k, v in (obj.get("stringData") or {}).items()}
    if obj["kind"] == "Secret":
        values.update({k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
    else:
        values.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
    return values


def _probe_timeout(probe: Manifest) -> float:
    period = float(probe.get("periodSeconds", 10))
    return float(probe.get("initialDelaySeconds", 0)) + period * float(probe.get("failureThreshold", 3))


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)`: a variable defined before, else left as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


class Kubelet:
    """Turns the overlay's pod templates into runnable containers for one smoke run."""

    def __init__(
        self, manifests: list[Manifest], image: ImageConfig, folder: Path, *, database: str, amqp_prefix: str
    ) -> None:
        self.image = image
        self.folder = folder
        self.database = database
        self.amqp_prefix = amqp_prefix
        self.objects = {
            (m["kind"], m["metadata"]["name"]): m for m in manifests if m.get("kind") in ("ConfigMap", "Secret")
        }
        self.namespace = next(
            (m["metadata"].get("namespace", "default") for m in by_kind(manifests, "Deployment")), "default"
        )
        # Every replica's container ports; the first replica's answer for `127.0.0.1:<port>` in any value.
        self.replica_ports: dict[tuple[str, int], dict[int, int]] = {}
        self.service_ports: dict[int, int] = {}
        for deployment in by_kind(manifests, "Deployment"):
            name = deployment["metadata"]["name"]
            for replica in range(int(deployment["spec"].get("replicas", 1))):
                ports = {
                    int(port["containerPort"]): free_port()
                    for container in deployment["spec"]["template"]["spec"]["containers"]
                    for port in container.get("ports", [])
                }
                self.replica_ports[(name, replica)] = ports
                for port, host_port in ports.items():
                    self.service_ports.setdefault(port, host_port)

    def pods(self, workload: Manifest) -> list[Pod]:
        """The pods of a Deployment (one per replica) or of a Job (one)."""
        name = workload["metadata"]["name"]
        spec = workload["spec"]
        replicas = int(spec.get("replicas", 1)) if workload["kind"] == "Deployment" else 1
        return [self._pod(workload, f"{name}-{replica}", replica) for replica in range(replicas)]

    def _pod(self, workload: Manifest, pod_name: str, replica: int) -> Pod:
        template = workload["spec"]["template"]["spec"]
        owner = f"{workload['kind']}/{workload['metadata']['name']}"
        ports = self.replica_ports.get((workload["metadata"]["name"], replica), {})
        volumes = {v["name"]: self._volume(v, pod_name, template) for v in template.get("volumes", [])}
        made = [
            [self._container(c, pod_name, template, volumes, ports) for c in template.get(key, [])]
            for key in ("initContainers", "containers")
        ]
        grace = float(template.get("terminationGracePeriodSeconds", 30))
        return Pod(pod_name, owner, made[0], made[1], grace)

    def _volume(self, volume: Manifest, pod_name: str, template: Manifest) -> Path:
        """The host directory standing for one volume of one pod."""
        fs_group = int(template.get("securityContext", {}).get("fsGroup", 0))
        if "hostPath" in volume:  # shared by every pod, like a directory of the one node
            path: Path = self.folder / "host" / str(volume["hostPath"]["path"]).strip("/").replace("/", "_")
            path.mkdir(parents=True, exist_ok=True)
            run_as = int(template.get("securityContext", {}).get("runAsUser", 0))
            _chown(path, run_as, fs_group)
            return path
        path = self.folder / "pods" / pod_name / "volumes" / str(volume["name"])
        path.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            path.chmod(0o777)  # as the kubelet makes an emptyDir
            return path
        for kind, ref in (("Secret", "secret"), ("ConfigMap", "configMap")):
            if ref in volume:
                source = volume[ref]
                values = _data(self._object(kind, source.get("secretName") or source["name"]))
                items = source.get("items") or [{"key": k, "path": k} for k in values]
                mode = int(source.get("defaultMode", 0o644))
                for item in items:
                    file = path / item["path"]
                    file.parent.mkdir(parents=True, exist_ok=True)
                    file.write_text(values[item["key"]])
                    file.chmod(int(item.get("mode", mode)))
                    _chown(file, 0, fs_group)
                path.chmod(0o755)
                return path
        raise ValueError(f"volume {volume['name']}: only hostPath, emptyDir, secret and configMap are run here")

    def _object(self, kind: str, name: str) -> Manifest:
        found = self.objects.get((kind, name))
        if found is None:
            raise ValueError(f"the overlay refers to {kind} {name}, which it does not define")
        return found

    def _container(
        self, spec: Manifest, pod_name: str, template: Manifest, volumes: dict[str, Path], ports: dict[int, int]
    ) -> Container:
        pod_security = template.get("securityContext", {})
        security = {**pod_security, **spec.get("securityContext", {})}
        image_user = (self.image.user or "0").split(":")
        uid = int(security.get("runAsUser", image_user[0]))
        gid = int(security.get("runAsGroup", image_user[1] if len(image_user) > 1 else uid))
        env = self._environment(spec, pod_name, ports)
        command = spec.get("command") or self.image.entrypoint
        args = spec.get("args") if "args" in spec or "command" in spec else self.image.cmd
        argv = [_expand(part, env) for part in [*command, *(args or [])]]
        mounts = []
        for mount in spec.get("volumeMounts", []):
            source = volumes[mount["name"]] / mount.get("subPath", "")
            mounts.append((source, mount["mountPath"], bool(mount.get("readOnly", False))))
        named = {p["name"]: int(p["containerPort"]) for p in spec.get("ports", []) if "name" in p}
        return Container(
            pod=pod_name,
            name=spec["name"],
            argv=argv,
            env=env,
            uid=uid,
            gid=gid,
            read_only_root=bool(security.get("readOnlyRootFilesystem", False)),
            workdir=spec.get("workingDir") or self.image.workdir or "/",
            mounts=mounts,
            readiness=self._probe(spec.get("readinessProbe"), named, ports, spec.get("startupProbe")),
            liveness=self._probe(spec.get("livenessProbe"), named, ports, None),
            ports=ports,
        )

    def _probe(
        self, probe: Manifest | None, named: dict[str, int], ports: dict[int, int], startup: Manifest | None
    ) -> Probe | None:
        if not probe or "httpGet" not in probe:
            return None
        get = probe["httpGet"]
        port = named[get["port"]] if isinstance(get["port"], str) else int(get["port"])
        timeout = _probe_timeout(probe) + (_probe_timeout(startup) if startup else 0)
        return Probe(f"http://127.0.0.1:{ports.get(port, port)}{get.get('path', '/')}", timeout)

    def _environment(self, spec: Manifest, pod_name: str, ports: dict[int, int]) -> dict[str, str]:
        env = dict(self.image.env)
        for source in spec.get("envFrom", []):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    prefix = source.get("prefix", "")
                    env.update({prefix + k: v for k, v in _data(self._object(kind, source[ref]["name"])).items()})
        fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace, "status.podIP": "127.0.0.1"}
        for item in spec.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom", {})
            for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if ref in source:
                    env[item["name"]] = _data(self._object(kind, source[ref]["name"]))[source[ref]["key"]]
            if "fieldRef" in source:
                env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
        return self._rewired(env, ports)

    def _rewired(self, env: dict[str, str], ports: dict[int, int]) -> dict[str, str]:
        """The smoke's three changes: this replica's ports, other pods' ports in URLs, its database and prefix."""
        out = {}
        for name, value in env.items():
            if name.endswith("_PORT") and value.isdigit() and int(value) in ports:
                value = str(ports[int(value)])
            value = re.sub(
                r"(127\.0\.0\.1|localhost):(\d+)",
                lambda m: f"127.0.0.1:{self.service_ports.get(int(m.group(2)), int(m.group(2)))}",
                value,
            )
            out[name] = value
        if "DATABASE_URL" in out:
            out["DATABASE_URL"] = out["DATABASE_URL"].rsplit("/", 1)[0] + "/" + self.database
        if "AMQP_PREFIX" in out or "AMQP_URL" in out:
            out["AMQP_PREFIX"] = self.amqp_prefix
        return out


def _chown(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
