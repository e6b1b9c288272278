"""Run inside the image (`python /smoke/image_check.py [dev-only import names]`, mounted by the smoke): what the
image must hold.

Every module of the services imports; pydicom decodes JPEG Baseline and Extended, JPEG-LS, JPEG 2000 and RLE
(files bundled in the pydicom wheel, through the processor's own `analyse`); the process is uid/gid 10001; the
root filesystem refuses writes and /tmp takes them. Prints one JSON object; exits 1 if anything failed. Only the
standard library and the image's own packages are used: the tests' code is not in the image.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import pkgutil
import sys
import tempfile
from pathlib import Path
from typing import Any

PACKAGES = ("common", "gateway", "ingest_service", "processor_service", "results_service")
# (bundled pydicom test file, the transfer syntax it must have)
ENCODED = (
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1)"),
    ("JPGExtended.dcm", "JPEG Extended (Process 2 and 4)"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
    ("JPEGLSNearLossless_16.dcm", "JPEG-LS Lossy (Near-Lossless) Image Compression"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("JPEG2000.dcm", "JPEG 2000 Image Compression"),
    ("MR_small_RLE.dcm", "RLE Lossless"),
)


def import_everything(dev_only: set[str]) -> tuple[int, list[str], list[str]]:
    """Import every module of the service packages (not `__main__`, which would start a service). A module that
    needs a development-only package (`dev_only`, import names) is listed apart: it is not part of the runtime."""
    count, failures, skipped = 0, list[str](), list[str]()
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if module.name.rsplit(".", 1)[-1] == "__main__":
                continue
            try:
                importlib.import_module(module.name)
                count += 1
            except ModuleNotFoundError as exc:
                missing = (exc.name or "").split(".")[0]
                (skipped if missing in dev_only else failures).append(f"{module.name}: needs {missing}")
            except Exception as exc:
                failures.append(f"{module.name}: {type(exc).__name__}: {exc}")
    return count, failures, skipped


def decode_all() -> tuple[list[dict[str, Any]], list[str]]:
    """Each encoded file through the processor's analysis: its syntax, the plugin, shape and mean."""
    import pydicom
    from pydicom.data import get_testdata_file

    from processor_service.imaging import analyse, preferred_plugin

    decoded, failures = [], []
    for name, syntax in ENCODED:
        path = get_testdata_file(name)
        if path is None:
            failures.append(f"{name}: not bundled with pydicom")
            continue
        ds = pydicom.dcmread(path)
        try:
            result = analyse(Path(path).read_bytes(), worker="image-check").result
        except Exception as exc:
            failures.append(f"{name} ({syntax}): {type(exc).__name__}: {exc}")
            continue
        if ds.file_meta.TransferSyntaxUID.name != syntax or result.original is None:
            failures.append(f"{name}: expected {syntax} with pixel data, got {ds.file_meta.TransferSyntaxUID.name}")
            continue
        decoded.append(
            {
                "syntax": syntax,
                "plugin": preferred_plugin(ds),
                "shape": [result.frames, result.rows, result.columns, result.samples_per_pixel],
                "mean": round(result.original.mean, 3),
            }
        )
    return decoded, failures


def filesystem() -> tuple[dict[str, str], list[str]]:
    """The root filesystem must refuse a write; /tmp must take one."""
    seen, failures = {}, []
    try:
        Path("/app/.write-test").write_text("x")
    except OSError as exc:
        seen["/app"] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    else:
        Path("/app/.write-test").unlink()
        seen["/app"] = "writable"
        failures.append("the root filesystem took a write")
    with tempfile.NamedTemporaryFile(dir="/tmp") as handle:
        handle.write(b"x")
        seen["/tmp"] = "writable"
    return seen, failures


def decodable_syntaxes() -> int:
    """How many transfer syntaxes pydicom can decode here, as the processor's heartbeat reports them."""
    from processor_service.heartbeat import available_decoders

    return len(available_decoders())


def main(argv: list[str]) -> int:
    """argv: the import names of the development-only packages (not installed in the image)."""
    modules, failures, skipped = import_everything(set(argv))
    try:
        decoded, decode_failures = decode_all()
        syntaxes = decodable_syntaxes()
    except ImportError as exc:  # reported with the import failures above
        decoded, decode_failures, syntaxes = [], [f"decoding not tried: {exc}"], 0
    seen, fs_failures = filesystem()
    failures += decode_failures + fs_failures
    if (os.getuid(), os.getgid()) != (10001, 10001):
        failures.append(f"runs as {os.getuid()}:{os.getgid()}, not 10001:10001")
    report = {
        "python": sys.version.split()[0],
        "uid_gid": f"{os.getuid()}:{os.getgid()}",
        "modules_imported": modules,
        "dev_only_modules": skipped,
        "decoded": decoded,
        "decodable_syntaxes": syntaxes,
        "filesystem": seen,
        "failures": failures,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
