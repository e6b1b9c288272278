"""One smoke run: the image checked, the overlay's Jobs run, its Deployments started and probed, files pushed
through, everything torn down. Each step appends a line to the report; the first failure ends the run."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import re
import shutil
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

from common.messaging.broker import delete_topology
from results_service.bootstrap_admin import DEFAULT_ADMIN_EMAIL
from results_service.db import drop_database
from tests.k8s_smoke.overlay import render_overlay
from tests.k8s_smoke.pods import ContainerProcess, image_size, mounted_image
from tests.k8s_smoke.traffic import Traffic, drive
from tests.k8s_smoke.workloads import Container, ImageConfig, Kubelet, Manifest, Pod, by_kind

ROOT = Path(__file__).resolve().parents[2]
CHECK_SCRIPT = Path(__file__).resolve().parent / "image_check.py"
JOB_TIMEOUT = 300.0
IMAGE_USER = (10001, 10001)


class SmokeFailed(RuntimeError):
    """A step of the smoke failed; the message says which and why."""


@dataclass
class Options:
    engine: str
    image: str
    overlay: str
    files: int
    settle_timeout: float
    folder: Path
    gateway: str = "gateway"
    processor: str = "processor"


@dataclass
class Run:
    """What the run saw, for the report."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    lines: list[str] = field(default_factory=list)
    traffic: Traffic | None = None
    passed: bool = False

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def dev_only_imports() -> list[str]:
    """Import names of pyproject's `dev` extras that no runtime dependency needs: absent from the image by design."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_dist_name(r) for r in project["dependencies"]}
    by_dist: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(_dist_name(dist), set()).add(module)
    dev = {_dist_name(r) for r in project["optional-dependencies"]["dev"]} - runtime
    return sorted(module for dist in dev for module in by_dist.get(dist, ()))


def _dist_name(requirement: str) -> str:
    """`tortoise-orm[asyncpg]>=1.1` -> `tortoise_orm` (PEP 503 normalised, with underscores)."""
    return re.sub(r"[-_.]+", "_", re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]).lower()


def image_check(image_root: Path, image: ImageConfig, folder: Path, run: Run) -> None:
    """image_check.py inside the image as uid 10001 with a read-only root and a /tmp of its own."""
    scratch = folder / "image-check"
    (scratch / "tmp").mkdir(parents=True)
    (scratch / "tmp").chmod(0o1777)
    (scratch / "smoke").mkdir()
    shutil.copy(CHECK_SCRIPT, scratch / "smoke" / CHECK_SCRIPT.name)
    container = Container(
        pod="image-check",
        name="check",
        argv=["python", f"/smoke/{CHECK_SCRIPT.name}", *dev_only_imports()],
        env=dict(image.env),
        uid=IMAGE_USER[0],
        gid=IMAGE_USER[1],
        read_only_root=True,
        workdir=image.workdir,
        mounts=[(scratch / "tmp", "/tmp", False), (scratch / "smoke", "/smoke", True)],
    )
    process = ContainerProcess(container, image_root, folder)
    code = process.run_to_completion(JOB_TIMEOUT)
    try:
        report = json.loads(process.log_text().strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SmokeFailed(f"the image check exited {code} without its report:\n{process.log_tail()}") from None
    decoded = ", ".join(f"{d['syntax']} ({d['plugin']})" for d in report["decoded"])
    run.say(
        f"image check as {report['uid_gid']}, root read-only (/app {report['filesystem']['/app']}, /tmp "
        f"{report['filesystem']['/tmp']}), Python {report['python']}: {report['modules_imported']} modules import; "
        f"pydicom decodes {decoded}; {report['decodable_syntaxes']} transfer syntaxes decodable"
    )
    if report["dev_only_modules"]:
        run.say("  not importable in the image, needing a dev-only package: " + ", ".join(report["dev_only_modules"]))
    if code != 0:
        raise SmokeFailed("the image check failed: " + "; ".join(report["failures"]))


def run_job(pods: list[Pod], image_root: Path, folder: Path, run: Run) -> None:
    """A Job's pod: its init containers one after the other, then its containers; each must exit 0."""
    for pod in pods:
        steps = []
        for container in pod.init_containers:  # each must succeed before the next starts
            steps.append(_run_once(container, image_root, folder))
            _check_exits(pod, steps, run)
        processes = [ContainerProcess(c, image_root, folder) for c in pod.containers]
        started = time.monotonic()
        for process in processes:
            process.launch()
        for process in processes:
            assert process.process is not None
            code = process.process.wait(JOB_TIMEOUT)
            steps.append((process, code, time.monotonic() - started))
        _check_exits(pod, steps, run, done=True)


def _check_exits(pod: Pod, steps: list[tuple[ContainerProcess, int, float]], run: Run, *, done: bool = False) -> None:
    """Report the pod's steps when it is done or one failed; a failed one ends the smoke."""
    failed = [(process, code) for process, code, _ in steps if code != 0]
    if done or failed:
        summary = ", ".join(f"{p.container.name} exit {c} in {s:.1f} s" for p, c, s in steps)
        run.say(f"{pod.owner} ({pod.name}): {summary}")
    for process, code in failed:
        raise SmokeFailed(f"{process.name} exited with {code}:\n{process.log_tail()}")


def _run_once(container: Container, image_root: Path, folder: Path) -> tuple[ContainerProcess, int, float]:
    process = ContainerProcess(container, image_root, folder)
    started = time.monotonic()
    code = process.run_to_completion(JOB_TIMEOUT)
    return process, code, time.monotonic() - started


def start_deployments(
    kubelet: Kubelet,
    deployments: list[Manifest],
    image_root: Path,
    folder: Path,
    run: Run,
    running: list[tuple[Pod, list[ContainerProcess]]],
) -> None:
    """Start every replica of every Deployment at once (as a rollout does) into `running`, then poll each
    readiness (and once its liveness) probe."""
    for deployment in deployments:
        for pod in kubelet.pods(deployment):
            for container in pod.init_containers:
                _run_once(container, image_root, folder)
            processes = [ContainerProcess(c, image_root, folder) for c in pod.containers]
            running.append((pod, processes))
            for process in processes:
                process.launch()
    started = time.monotonic()
    for pod, processes in running:
        for process in processes:
            probe = process.container.readiness
            if probe is None:
                continue
            try:
                process.wait_ready(probe.url, probe.timeout)
            except RuntimeError as exc:
                raise SmokeFailed(str(exc)) from None
            live = process.container.liveness
            if live is not None:
                process.wait_ready(live.url, live.timeout)
        ports = ", ".join(f"{p}->127.0.0.1:{h}" for p, h in processes[0].container.ports.items()) if processes else ""
        run.say(f"{pod.owner} ({pod.name}): ready after {time.monotonic() - started:.1f} s (port {ports})")


@contextlib.contextmanager
def torn_down(
    running: list[tuple[Pod, list[ContainerProcess]]], database_url: str | None, amqp: tuple[str, str] | None, run: Run
) -> Iterator[None]:
    """Whatever happens inside: every container stopped (SIGTERM, then SIGKILL after the pod's grace), the
    database dropped, the broker topology deleted."""
    try:
        yield
    finally:
        killed = [
            process.name
            for pod, processes in reversed(running)
            for process in processes
            if process.terminate(pod.grace_seconds)
        ]
        teardown = [
            f"{sum(len(p) for _, p in running)} containers stopped"
            + (f" ({len(killed)} killed: {', '.join(killed)})" if killed else " by SIGTERM")
        ]
        if database_url:
            try:
                asyncio.run(drop_database(database_url))
                teardown.append(f"database {database_url.rsplit('/', 1)[-1]} dropped")
            except Exception as exc:  # reported; the rest of the teardown still runs
                teardown.append(f"database NOT dropped ({type(exc).__name__}: {exc})")
        if amqp:
            try:
                asyncio.run(_delete_topology(*amqp))
                teardown.append(f"AMQP prefix {amqp[1]} deleted")
            except Exception as exc:
                teardown.append(f"AMQP prefix {amqp[1]} NOT deleted ({type(exc).__name__}: {exc})")
        run.say("teardown: " + ", ".join(teardown))


async def _delete_topology(amqp_url: str, prefix: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await delete_topology(await connection.channel(), prefix)


def _admin(pods: list[Pod]) -> tuple[str, str]:
    """The first admin's e-mail and password, as the set-up Job's containers were given them."""
    env = {k: v for pod in pods for c in [*pod.init_containers, *pod.containers] for k, v in c.env.items()}
    if not env.get("ADMIN_PASSWORD"):
        raise SmokeFailed("the set-up Job gives no ADMIN_PASSWORD: the smoke cannot log in as the first admin")
    return env.get("ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL, env["ADMIN_PASSWORD"]


def smoke(options: Options) -> Run:
    """The whole run; raises SmokeFailed (after tearing down) when a step fails. The containers' logs are kept in
    `options.folder/<run id>` unless it passed."""
    run = Run()
    folder = options.folder / run.run_id
    folder.mkdir(parents=True)
    started = time.monotonic()
    try:
        _smoke(options, run, folder)
    except BaseException:
        run.say(f"the containers' logs: {folder}")
        raise
    run.say(f"took {time.monotonic() - started:.0f} s")
    if run.passed:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        run.say(f"the containers' logs: {folder}")
    return run


def _smoke(options: Options, run: Run, folder: Path) -> None:
    size = image_size(options.engine, options.image)
    run.say(
        f"k8s-smoke {run.run_id}: image {options.image} ({size / 1e6:.0f} MB), overlay k8s/overlays/{options.overlay}"
    )
    manifests = render_overlay(options.overlay)
    deployments = by_kind(manifests, "Deployment")
    jobs = by_kind(manifests, "Job")
    run.say(
        f"rendered: {len(manifests)} objects; Jobs: {', '.join(j['metadata']['name'] for j in jobs)}; Deployments: "
        + ", ".join(f"{d['metadata']['name']} x{d['spec'].get('replicas', 1)}" for d in deployments)
    )
    with mounted_image(options.engine, options.image) as (image_root, image):
        image_check(image_root, image, folder, run)
        kubelet = Kubelet(
            manifests,
            image,
            folder,
            database=f"dicomflow_k8s_smoke_{run.run_id}",
            amqp_prefix=f"k8s_smoke_{run.run_id}",
        )
        pods_of_jobs = [kubelet.pods(job) for job in jobs]
        job_pods = [pod for pods in pods_of_jobs for pod in pods]
        env = {k: v for pod in job_pods for c in pod.init_containers + pod.containers for k, v in c.env.items()}
        running: list[tuple[Pod, list[ContainerProcess]]] = []
        amqp = (env["AMQP_URL"], env["AMQP_PREFIX"]) if "AMQP_URL" in env else None
        with torn_down(running, env.get("DATABASE_URL"), amqp, run):
            for pods in pods_of_jobs:
                run_job(pods, image_root, folder, run)
            start_deployments(kubelet, deployments, image_root, folder, run, running)
            gateway = next(
                p for pod, processes in running for p in processes if pod.owner == f"Deployment/{options.gateway}"
            )
            email, password = _admin(job_pods)
            gateway_url = f"http://127.0.0.1:{next(iter(gateway.container.ports.values()))}"
            traffic = asyncio.run(drive(gateway_url, email, password, options.files, options.settle_timeout))
            run.traffic = traffic
            for line in traffic.uploads:
                run.say(f"upload {line}")
            processors = {pod.name for pod, _ in running if pod.owner == f"Deployment/{options.processor}"}
            run.passed = judge(traffic, 2 + options.files, processors, run)


def judge(traffic: Traffic, expected: int, processors: set[str], run: Run) -> bool:
    """Every file accepted and done, by more than one processor replica, each a pod of the processor."""
    settled = f"in {traffic.settle_seconds:.1f} s" if traffic.settle_seconds is not None else "NOT settled"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(traffic.statuses.items()))
    run.say(f"instances: {traffic.accepted}/{expected} accepted; {counts} ({settled} after the first upload)")
    run.say("results by worker: " + ", ".join(f"{w} {n}" for w, n in sorted(traffic.workers.items())))
    hosts = {worker.rsplit(":", 1)[0] for worker in traffic.workers}
    problems = []
    if traffic.accepted != expected or traffic.statuses.get("done", 0) != expected:
        problems.append(f"expected {expected} instances done")
    if len(traffic.workers) < 2:
        problems.append("results came from fewer than two processor replicas")
    if not hosts <= processors:
        problems.append(f"workers {sorted(hosts - processors)} are not processor pods {sorted(processors)}")
    problems += traffic.failures[:5]
    run.say("verdict: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return not problems
