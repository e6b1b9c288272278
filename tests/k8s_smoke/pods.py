"""Containers as processes of this host: the image mounted by podman, each container chrooted into an overlay of it.

`podman run` is refused on this machine (and would need a network of its own); `podman image mount` and
`chroot` are not. Each container runs under `unshare --mount --uts --pid --fork` through pod.sh: its own mounts,
its pod's name as hostname (so `hostname:pid` tells replicas apart as it does in a cluster) and its own process
numbers (the service is pid 1, as in a container, and gets SIGTERM alone on stop). The network is the host's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from single_host.processes import ChildProcess
from tests.k8s_smoke.workloads import Container, ImageConfig

POD_SCRIPT = Path(__file__).resolve().parent / "pod.sh"


@contextlib.contextmanager
def mounted_image(engine: str, image: str) -> Iterator[tuple[Path, ImageConfig]]:
    """The image's root filesystem (read-only, `podman image mount`) and its config, unmounted afterwards."""
    if Path(engine).name != "podman":
        raise SystemExit(f"the smoke mounts the image with `podman image mount`; {engine} cannot (install podman)")
    inspected = json.loads(subprocess.run([engine, "image", "inspect", image], capture_output=True, check=True).stdout)
    config = inspected[0].get("Config", {})
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    image_config = ImageConfig(
        env=env,
        entrypoint=config.get("Entrypoint") or [],
        cmd=config.get("Cmd") or [],
        workdir=config.get("WorkingDir") or "/",
        user=config.get("User") or "0",
    )
    root = subprocess.run([engine, "image", "mount", image], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield Path(root), image_config
    finally:
        subprocess.run([engine, "image", "unmount", image], capture_output=True, check=False)


def image_size(engine: str, image: str) -> int:
    """The image's size in bytes, as the engine reports it."""
    done = subprocess.run([engine, "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True)
    return int(done.stdout.strip() or 0)


class ContainerProcess(ChildProcess):
    """One container, its output in `<folder>/<pod>.<container>.log`."""

    def __init__(self, container: Container, image_root: Path, folder: Path) -> None:
        super().__init__(f"{container.pod}/{container.name}", folder / f"{container.pod}.{container.name}.log")
        self.container = container
        self.image_root = image_root
        self.scratch = folder / "pods" / container.pod / "containers" / container.name

    def launch(self) -> None:
        """Start the container (pod.sh in new namespaces)."""
        c = self.container
        self.scratch.mkdir(parents=True, exist_ok=True)
        control = {
            "POD_IMAGE_ROOT": str(self.image_root),
            "POD_DIR": str(self.scratch),
            "POD_HOSTNAME": c.pod,
            "POD_READONLY": "1" if c.read_only_root else "0",
            "POD_UID": str(c.uid),
            "POD_GID": str(c.gid),
            "POD_WORKDIR": c.workdir,
            "POD_MOUNTS": "\n".join(f"{host} {path} {'ro' if ro else 'rw'}" for host, path, ro in c.mounts),
        }
        argv = ["unshare", "--mount", "--uts", "--pid", "--fork", "sh", str(POD_SCRIPT), *c.argv]
        self.start(argv, env={**c.env, **control})

    def init_pid(self) -> int | None:
        """The host pid of the container's pid 1 (unshare's forked child), None once it has gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return None
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            return int(children[0]) if children else None
        return None

    def run_to_completion(self, timeout: float) -> int:
        """Run (an init container, a Job's container) until it exits; its exit code."""
        self.launch()
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(kill=True)
            raise RuntimeError(f"{self.name} still running after {timeout:.0f} s:\n{self.log_tail()}") from None

    def terminate(self, grace: float) -> bool:
        """SIGTERM to the container's pid 1 only, as a kubelet does; SIGKILL to everything after `grace`.
        True if it had to be killed."""
        pid = self.init_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.returncode is None:
                time.sleep(0.1)
        return self.stop(kill=True) if self.returncode is None else False
