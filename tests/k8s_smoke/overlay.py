"""The overlay rendered as an operator would, with secrets of the smoke's own.

Every secret file the overlay reads (those with a committed `<file>.example`) is generated afresh in a
temporary copy of `k8s/`: never the committed placeholders, never the operator's real files.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from common.storage.crypto_keys import generate_key_spec
from tests.k8s.render import EXAMPLE_SUFFIX, K8S, Manifest, kubectl


def generated_secret(example: Path) -> str:
    """A fresh value in the example's shape: a blob keyring, `key=value` lines, or one random token."""
    if example.name.startswith("blob_keys"):
        return generate_key_spec("smoke") + "\n"
    lines = [line for line in example.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if lines and all("=" in line for line in lines):
        return "".join(f"{line.split('=', 1)[0]}={secrets.token_urlsafe(24)}\n" for line in lines)
    return secrets.token_urlsafe(48) + "\n"


def render_overlay(overlay: str) -> list[Manifest]:
    """`kubectl kustomize k8s/overlays/<overlay>` with generated secrets, as dicts."""
    with tempfile.TemporaryDirectory(prefix="dicomflow-k8s-smoke-") as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree)
        for example in sorted((tree / "overlays" / overlay).rglob(f"*{EXAMPLE_SUFFIX}")):
            example.with_name(example.name.removesuffix(EXAMPLE_SUFFIX)).write_text(generated_secret(example))
        done = subprocess.run(
            [kubectl(), "kustomize", str(tree / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize k8s/overlays/{overlay} failed:\n{done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]
