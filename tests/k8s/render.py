"""Render an overlay of `k8s/` with `kubectl kustomize`, the way an operator would, on a fresh clone too.

The overlays read their secrets from files the operator provides (`k8s/overlays/<name>/secrets/<file>`,
git-ignored); only `<file>.example` placeholders are in the repository. So rendering works on a copy of `k8s/`
in a temporary directory where every missing secret file is its example (a real one, if present, is kept):
the repository is never written to, and no example can end up applied by accident.

`python -m tests.k8s.render local` prints the rendered overlay (used by `make k8s-smoke`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBECTL = "/usr/bin/kubectl"
EXAMPLE_SUFFIX = ".example"
OVERLAYS = ("local", "production")

Manifest = dict[str, Any]


class KubectlMissing(RuntimeError):
    """kubectl is not installed where the checks expect it."""


def kubectl() -> str:
    """The kubectl binary (its `kustomize` is the renderer), or KubectlMissing with what to install."""
    found = shutil.which("kubectl") or (KUBECTL if Path(KUBECTL).is_file() else None)
    if found is None:
        raise KubectlMissing(
            "kubectl is needed to render k8s/ (`kubectl kustomize`) and was not found on PATH nor at "
            f"{KUBECTL}: install it (e.g. Debian's `kubernetes-client` or the upstream binary)"
        )
    return found


def fill_examples(tree: Path) -> list[Path]:
    """Copy each `<file>.example` under `tree` to `<file>` where `<file>` is missing; the files written."""
    written = []
    for example in sorted(tree.rglob(f"*{EXAMPLE_SUFFIX}")):
        target = example.with_name(example.name.removesuffix(EXAMPLE_SUFFIX))
        if not target.exists():
            shutil.copyfile(example, target)
            written.append(target)
    return written


def render_text(overlay: str) -> str:
    """The overlay rendered as one YAML stream."""
    binary = kubectl()
    with tempfile.TemporaryDirectory(prefix="dicomflow-k8s-") as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree)
        fill_examples(tree)
        done = subprocess.run(
            [binary, "kustomize", str(tree / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize k8s/overlays/{overlay} failed:\n{done.stderr.strip()}")
    return done.stdout


def render(overlay: str) -> list[Manifest]:
    """The overlay's objects, as dicts."""
    return [doc for doc in yaml.safe_load_all(render_text(overlay)) if doc]


def render_all() -> dict[str, list[Manifest]]:
    """Every overlay, rendered side by side (two kubectl processes)."""
    with ThreadPoolExecutor(max_workers=len(OVERLAYS)) as pool:
        return dict(zip(OVERLAYS, pool.map(render, OVERLAYS), strict=True))


if __name__ == "__main__":
    sys.stdout.write(render_text(sys.argv[1] if len(sys.argv) > 1 else "local"))
