"""The source trees a benchmark runs side by side: this checkout, and an older commit checked out into a temporary
git worktree, each set up and run as a system of its own (`single_host.processes.RunningSystem`).

Each tree is set up the way its own Makefile's `setup` target does it (the `python -m <module>` steps it lists:
secrets, migrations, broker topology, first admin), with this interpreter and venv, against a database, AMQP
prefix, secret files and blob folder of its own, so code from before a rename or a new key format runs as it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from common.app.settings import BaseServiceSettings
from results_service.db import drop_database
from single_host.processes import ROOT, RunningSystem

SETUP_STEP = re.compile(r"-m\s+([\w.]+)")
# The load generator is one user sending as fast as it can: no per-user rate limit.
BENCH_ENV = {"RATE_LIMIT_PER_MINUTE": "1000000000", "RATE_LIMIT_BURST": "1000000", "LOG_LEVEL": "INFO"}


def git(*args: str, cwd: Path = ROOT) -> str:
    """Run git in `cwd` and return its stripped output; a failure raises with git's message."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def commit_of(ref: str | None) -> str:
    """The short commit `ref` names, or for None this checkout's (`git describe --always --dirty`)."""
    return git("rev-parse", "--short", f"{ref}^{{commit}}") if ref else git("describe", "--always", "--dirty")


@contextlib.contextmanager
def worktree(ref: str, path: Path) -> Iterator[Path]:
    """`ref` checked out (detached) at `path` for the duration of the block, then removed."""
    git("worktree", "prune")  # entries of earlier runs whose folder is gone
    git("worktree", "add", "--detach", str(path), f"{ref}^{{commit}}")
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))


def setup_modules(makefile: str) -> list[str]:
    """The modules the `setup` target of `makefile` (its text) runs with `python -m`, in order."""
    lines = makefile.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("setup:"))
    modules = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        modules += SETUP_STEP.findall(line)
    return modules


def missing_requirements(lock: str) -> list[str]:
    """The `name==version` pins of a requirements.lock text whose package this venv does not have at all."""
    pins = [line.split(";")[0].strip() for line in lock.splitlines() if "==" in line and not line.startswith("#")]
    missing = []
    for pin in pins:
        try:
            metadata.distribution(pin.split("==")[0])
        except metadata.PackageNotFoundError:
            missing.append(pin)
    return missing


def own_code(root: Path, env: dict[str, str]) -> None:
    """Check that the services started with `env` import the tree at `root`, not the installed checkout."""
    code = "import results_service, sys; print(results_service.__file__)"
    found = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True).stdout
    if not found.startswith(str(root)):
        raise RuntimeError(f"the services of {root} would import {found.strip() or 'nothing'}")


@contextlib.contextmanager
def tree_system(root: Path, folder: Path, env: dict[str, str] | None = None) -> Iterator[RunningSystem]:
    """The tree at `root` set up in a database and folder of its own, its services running (processors stopped),
    with BENCH_ENV and `env` on top of this process's environment."""
    folder.mkdir(parents=True)
    base = BaseServiceSettings().database_url.rsplit("/", 1)[0]
    database_url = f"{base}/dicomflow_bench_{folder.name}_{os.getpid()}"
    secrets = {
        "AUTH_SECRET": "",
        "BLOB_KEYS": "",
        "SERVICE_SECRET": "",
        "AUTH_SECRET_FILE": str(folder / "secrets" / "auth_secret"),
        "SERVICE_SECRET_FILE": str(folder / "secrets" / "service_secret"),
        "BLOB_KEYS_FILE": str(folder / "secrets" / "blob_keys"),
    }
    system = RunningSystem(database_url, folder, {**BENCH_ENV, **(env or {}), **secrets}, root=root)
    missing = missing_requirements((root / "requirements.lock").read_text())
    if missing:
        raise SystemExit(f"{root} needs {', '.join(missing)}: {sys.executable} -m pip install {' '.join(missing)}")
    try:
        own_code(root, system.env)
        for module in setup_modules((root / "Makefile").read_text()):
            system.run(module)
        system.start_all()
        system.stop("processor_service")
        yield system
    finally:
        try:
            # The current tree's topology names cover the older trees' (names are only ever added).
            system.stop_all()
        finally:
            asyncio.run(drop_database(database_url))
