"""`make k8s-smoke` (after `make image`): the local overlay's workloads run from the image, files pushed through.

    python -m tests.k8s_smoke --image localhost/dicomflow:<tag> [--overlay local] [--files 100]

Needs root, podman (the image is mounted with `podman image mount`), kubectl (its kustomize renders the overlay),
and the machine's PostgreSQL and RabbitMQ, which the overlay points at. Uses a database and AMQP prefix of its
own, and free ports: a running deployment is never touched. Prints a short report; exits 1 if the run failed
(the containers' logs are then kept in var/k8s-smoke/<run>/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from tests.k8s_smoke.smoke import Options, SmokeFailed, smoke

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s_smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="the image to run, e.g. localhost/dicomflow:<commit>")
    parser.add_argument("--engine", default=shutil.which("podman") or "podman", help="podman (default: on PATH)")
    parser.add_argument("--overlay", default="local", help="overlay of k8s/overlays to run (default local)")
    parser.add_argument("--files", type=int, default=100, help="generated instances in the zip (default 100)")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="seconds for every instance to finish")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: containers are chrooted overlays of the mounted image in namespaces of their own")
    options = Options(
        engine=args.engine,
        image=args.image,
        overlay=args.overlay,
        files=args.files,
        settle_timeout=args.settle_timeout,
        folder=ROOT / "var" / "k8s-smoke",
    )
    try:
        run = smoke(options)
    except SmokeFailed as exc:
        print(f"verdict: FAIL: {exc}", file=sys.stderr)
        return 1
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
