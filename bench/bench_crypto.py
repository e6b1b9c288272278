"""Cost of encrypting blobs at rest, against baselines measured in the same run.

Three parts, each written to the `bench_crypto` section of bench/README.md:

* streaming: 64 MiB of random bytes in 64 KiB pieces (the blob store's write path) through
  `common.storage.crypto`, through the implementation it replaced (`Previous*` below, a copy of
  common/storage/crypto.py at 96e5776: a growing bytearray, each chunk copied out of it and the output joined
  again) and through sha256, the pass every stored blob pays anyway;
* whole files (ingest's `put_bytes_sync`): generated instances of the two samples, user and system
  CPU per file, against the floor of sha256 plus ONE `AESGCM.encrypt` of the whole file (what sealing
  cannot go below), the previous implementation alongside; rounds alternate, best round kept. The
  process tunes malloc as the services do (`processor_service.malloc.tune_malloc`). The whole store
  (`put_bytes_sync`) is timed writing with O_DIRECT and buffered (`BLOB_DIRECT_IO`), rounds alternating;
* the processor's read path, in spawned processes as the worker pool starts them (malloc as today,
  untuned, and tuned): CPU per file of `measure_blob` (frame by frame through the decrypting reader)
  against the plaintext read whole and parsed once, on the samples, and the CPU and peak of traced
  memory (tracemalloc) measuring a generated multi-frame file of about 200 MB either way.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import platform
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from processor_service.malloc import tune_malloc

from bench.report import write_section
from common.storage.blobs import BlobStore
from common.storage.crypto import MAGIC, PREFIX_BYTES, SALT_BYTES, TAG_BYTES, VERSION, Keyring, parse_header
from common.storage.crypto_keys import generate_key_spec
from processor_service.imaging import Analysis, analyse
from processor_service.work import measure_blob
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix

SIZE = 64 * 1024 * 1024
PIECE = 64 * 1024
FILES = ((SAMPLE_01, 150), (SAMPLE_02, 60))  # the bench_pipeline mix, 5:2
ROUNDS = 3
BIG_FRAMES = 400  # x 512 KiB (sample-01's frame, shifted each time) = 210 MB
STREAM_REPEATS = 8  # passes over the 64 MiB per round: thread CPU time is counted in ticks of about 4 ms

INTRO = """`python -m bench crypto` (`bench/bench_crypto.py`). Chunks are sealed and opened with
`AESGCM.encrypt_into`/`decrypt_into` from memoryview slices straight into one output of exact size;
the baseline "previous" is a copy, inside the benchmark, of the implementation that grew a bytearray,
copied every chunk out of it and joined the output again (common/storage/crypto.py at 96e5776). The format
(version 1) is unchanged: tests/test_crypto.py decrypts a blob written by the previous code and
checks every new write path byte for byte against the format written from its description."""


class PreviousEncryptor:
    """crypto.Encryptor at 96e5776 (the baseline): buffer grown by +=, two copies per chunk, output joined."""

    def __init__(self, master: bytes, kid: str, chunk_size: int) -> None:
        salt, self.prefix, kid_bytes = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES), kid.encode()
        self.header = MAGIC + bytes([VERSION, len(kid_bytes)]) + kid_bytes + salt + self.prefix
        self.header += chunk_size.to_bytes(4, "big")
        info = b"dicomflow-blob-v1:" + kid_bytes
        self.aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master))
        self.chunk_size, self.buffer, self.index = chunk_size, bytearray(), 0

    def update(self, data: bytes) -> bytes:
        self.buffer += data
        out = bytearray()
        while len(self.buffer) > self.chunk_size:
            out += self.seal(bytes(self.buffer[: self.chunk_size]), final=False)
            del self.buffer[: self.chunk_size]
        return bytes(out)

    def finalize(self) -> bytes:
        return self.seal(bytes(self.buffer), final=True)

    def seal(self, plaintext: bytes, *, final: bool) -> bytes:
        nonce = self.prefix + self.index.to_bytes(4, "big") + bytes([final])
        self.index += 1
        return self.aead.encrypt(nonce, plaintext, self.header)


class PreviousDecryptor:
    """common.storage.crypto.Decryptor at 96e5776 (the baseline), the same copies on the way back."""

    def __init__(self, ring: Keyring) -> None:
        self.ring, self.buffer, self.index = ring, bytearray(), 0
        self.parsed: Any = None

    def update(self, data: bytes) -> bytes:
        self.buffer += data
        if self.parsed is None:
            self.parsed = parse_header(self.buffer, self.ring.keys)
            if self.parsed is None:
                return b""
            del self.buffer[: len(self.parsed.header)]
        sealed = self.parsed.chunk_size + TAG_BYTES
        out = bytearray()
        while len(self.buffer) > sealed:
            out += self.open(bytes(self.buffer[:sealed]), final=False)
            del self.buffer[:sealed]
        return bytes(out)

    def finalize(self) -> bytes:
        return self.open(bytes(self.buffer), final=True)

    def open(self, sealed: bytes, *, final: bool) -> bytes:
        nonce = self.parsed.prefix + self.index.to_bytes(4, "big") + bytes([final])
        self.index += 1
        return bytes(self.parsed.aead.decrypt(nonce, sealed, self.parsed.header))


def previous_encrypt_bytes(ring: Keyring, data: bytes) -> bytes:
    encryptor = PreviousEncryptor(ring.keys[ring.active], ring.active, ring.chunk_size)
    return encryptor.header + encryptor.update(data) + encryptor.finalize()


def previous_decrypt_bytes(ring: Keyring, blob: bytes) -> bytes:
    decryptor = PreviousDecryptor(ring)
    return decryptor.update(blob) + decryptor.finalize()


def cpu() -> tuple[float, float]:
    """User and system CPU seconds of the calling thread."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime


def per_item(run: Callable[[Any], object], items: list[Any]) -> tuple[float, float]:
    """User and system ms per item of `run` over `items` (outputs dropped at once, as a service drops them)."""
    user, system = cpu()
    for item in items:
        run(item)
    after_user, after_system = cpu()
    return (after_user - user) / len(items) * 1000, (after_system - system) / len(items) * 1000


def best_rounds(passes: Mapping[str, Callable[[Any], object]], items: list[Any]) -> dict[str, tuple[float, float]]:
    """Per-item (user, sys) ms of each pass: rounds alternate between the passes, the best round counts."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(ROUNDS):
        for name, run in passes.items():
            figures = per_item(run, items)
            if name not in best or sum(figures) < sum(best[name]):
                best[name] = figures
    return best


def streaming(ring: Keyring) -> list[str]:
    data = os.urandom(SIZE)
    pieces = [data[i : i + PIECE] for i in range(0, SIZE, PIECE)]
    encrypted = b"".join(ring.encrypt_iter(pieces))
    sealed_pieces = [encrypted[i : i + PIECE] for i in range(0, len(encrypted), PIECE)]
    assert b"".join(ring.decrypt_iter(sealed_pieces)) == data

    def sha(_: object) -> None:
        digest = hashlib.sha256()
        for piece in pieces:
            digest.update(piece)

    def previous_encrypt(_: object) -> None:
        encryptor = PreviousEncryptor(ring.keys[ring.active], ring.active, ring.chunk_size)
        for piece in pieces:
            encryptor.update(piece)
        encryptor.finalize()

    def previous_decrypt(_: object) -> None:
        decryptor = PreviousDecryptor(ring)
        for piece in sealed_pieces:
            decryptor.update(piece)
        decryptor.finalize()

    passes: dict[str, Callable[[Any], object]] = {
        "sha256 (baseline)": sha,
        "encrypt, previous": previous_encrypt,
        "encrypt": lambda _: [None for _ in ring.encrypt_iter(pieces)],
        "decrypt, previous": previous_decrypt,
        "decrypt": lambda _: [None for _ in ring.decrypt_iter(sealed_pieces)],
    }
    best = best_rounds(passes, [None] * STREAM_REPEATS)
    mib, floor = SIZE / 2**20, sum(best["sha256 (baseline)"])
    rows = [
        f"| {name} | {mib / (sum(ms) / 1000):.0f} MiB/s | {ms[0]:.1f} / {ms[1]:.1f} | {sum(ms) / floor:.2f}x |"
        for name, ms in best.items()
    ]
    return [
        f"Streaming: {mib:.0f} MiB of random bytes in {PIECE // 1024} KiB pieces, 64 KiB chunks, "
        f"best of {ROUNDS} alternating rounds.",
        "",
        "| pass | throughput (CPU) | user / sys ms per 64 MiB | CPU relative to sha256 |",
        "|---|---|---|---|",
        *rows,
    ]


def whole_files(ring: Keyring, root: Path) -> list[str]:
    files = [data for _, data in iter_mix(FILES)]
    for data in files[:: len(files) // 5]:  # each implementation reads what the other writes
        assert ring.decrypt_bytes(previous_encrypt_bytes(ring, data)) == data
        assert previous_decrypt_bytes(ring, bytes(ring.encrypt_bytes(data))) == data
    sealed = [bytes(ring.encrypt_bytes(data)) for data in files]
    key, nonce = os.urandom(32), os.urandom(12)

    def floor(data: bytes) -> None:
        hashlib.sha256(data).digest()
        AESGCM(key).encrypt(nonce, data, None)

    encrypt_passes: dict[str, Callable[[Any], object]] = {
        "floor: sha256 + one AESGCM.encrypt of the whole file": floor,
        "sha256 + encrypt_bytes, previous": lambda data: (
            hashlib.sha256(data).digest(),
            previous_encrypt_bytes(ring, data),
        ),
        "sha256 + encrypt_bytes": lambda data: (hashlib.sha256(data).digest(), ring.encrypt_bytes(data)),
    }
    decrypt_passes: dict[str, Callable[[Any], object]] = {
        "decrypt_bytes, previous": lambda blob: previous_decrypt_bytes(ring, blob),
        "decrypt_bytes": ring.decrypt_bytes,
    }
    best = best_rounds(encrypt_passes, files) | best_rounds(decrypt_passes, sealed)
    # Both write modes, alternating rounds, each into blob stores of its own (new files every round).
    modes = {"buffered write + fsync": False, "O_DIRECT write + fdatasync": True}
    rounds: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for i in range(ROUNDS):
        for mode, direct in modes.items():
            store = BlobStore(root / f"round-{i}-{'direct' if direct else 'buffered'}", ring, direct_io=direct)
            rounds[mode].append(per_item(store.put_bytes_sync, files))
            assert store.direct_io == direct  # the direct rounds really wrote with O_DIRECT
    for mode, figures in rounds.items():
        best[f"put_bytes_sync: hash, seal, {mode}, rename, dir fsync"] = min(figures, key=sum)
    base = sum(best["floor: sha256 + one AESGCM.encrypt of the whole file"])
    over = {name: sum(best[f"sha256 + encrypt_bytes{name}"]) - base for name in ("", ", previous")}
    mean = sum(map(len, files)) / len(files) / 1e6
    return [
        "",
        f"Whole files: {len(files)} instances ({', '.join(f'{n} from {p.name}' for p, n in FILES)}; "
        f"{mean:.2f} MB on average) held in memory, CPU of the calling thread per file, best of {ROUNDS} "
        "alternating rounds, malloc tuned as in the services.",
        "",
        "| pass (per file) | user ms | sys ms | CPU relative to the floor |",
        "|---|---|---|---|",
        *(f"| {name} | {u:.3f} | {s:.3f} | {(u + s) / base:.2f}x |" for name, (u, s) in best.items()),
        "",
        f"- Chunking and framing on top of the floor: {over[''] * 1000:.0f} µs per file "
        f"(previous: {over[', previous'] * 1000:.0f} µs).",
    ]


def big_multi_frame(path: Path) -> None:
    """A native multi-frame file of BIG_FRAMES frames of sample-01's size, each one shifted."""
    ds = pydicom.dcmread(SAMPLE_01)
    frame = ds.pixel_array
    stack = np.empty((BIG_FRAMES, *frame.shape), frame.dtype)
    for index in range(BIG_FRAMES):
        stack[index] = np.roll(frame, 3 * index, axis=1)
    ds.NumberOfFrames, ds.PixelData = BIG_FRAMES, stack.tobytes()
    ds.save_as(path)


def processor_figures(store: BlobStore, samples: dict[str, str], big: str, *, tuned: bool) -> dict[str, Any]:
    """Run in a spawned process (as a pool worker): CPU per sample file, then CPU and peak memory on the big file."""
    if tuned:
        tune_malloc()

    def whole(sha256: str) -> Analysis:
        with store.open(sha256) as reader:
            data = reader.read()
        return analyse(data, worker="b")

    passes: dict[str, Callable[[str], Analysis]] = {
        "whole": whole,
        "frame by frame": lambda sha256: measure_blob(store, sha256, "b"),
    }
    figures: dict[str, Any] = {}
    for name, sha256 in samples.items():
        assert passes["whole"](sha256).result.histogram == measure_blob(store, sha256, "b").result.histogram
        figures[name] = best_rounds(passes, [sha256] * (40 if "01" in name else 6))
    for mode, run in passes.items():
        figures[f"big, {mode}"] = sum(per_item(run, [big])) / 1000
        tracemalloc.start()
        figures["frames"] = run(big).result.frames
        figures[f"big peak, {mode}"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return figures


def processor(store: BlobStore, root: Path) -> list[str]:
    samples = {path.name: store.put_bytes_sync(path.read_bytes()) for path in (SAMPLE_01, SAMPLE_02)}
    path = root / "big.dcm"
    big_multi_frame(path)
    big = store.put_bytes_sync(path.read_bytes())
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        today = pool.apply(processor_figures, (store, samples, big), {"tuned": False})
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        tuned = pool.apply(processor_figures, (store, samples, big), {"tuned": True})
    rows = []
    for name in samples:
        for label, figures in (("malloc as today", today), ("malloc tuned", tuned)):
            whole, lazy = figures[name]["whole"], figures[name]["frame by frame"]
            rows.append(
                f"| {name}, {label}: CPU per file (user / sys ms) | {whole[0]:.2f} / {whole[1]:.2f} | "
                f"{lazy[0]:.2f} / {lazy[1]:.2f} | {sum(lazy) / sum(whole):.2f}x |"
            )
    big_mb, frames = path.stat().st_size / 1e6, today["frames"]
    whole_peak, lazy_peak = today["big peak, whole"], today["big peak, frame by frame"]
    whole_cpu, lazy_cpu = today["big, whole"], today["big, frame by frame"]
    rows += [
        f"| {big_mb:.0f} MB, {frames} frames: peak traced memory | {whole_peak / 1e6:.0f} MB | "
        f"{lazy_peak / 1e6:.1f} MB | {lazy_peak / whole_peak:.3f}x |",
        f"| {big_mb:.0f} MB, {frames} frames, malloc as today: CPU | {whole_cpu:.2f} s | {lazy_cpu:.2f} s | "
        f"{lazy_cpu / whole_cpu:.2f}x |",
    ]
    sample = next(iter(samples))
    saved = today[sample]["whole"][1] - tuned[sample]["whole"][1]
    saved_lazy = today[sample]["frame by frame"][1] - tuned[sample]["frame by frame"][1]
    rows += [
        "",
        f"- The worker processes do not tune malloc (they are spawned): on {sample} that costs "
        f"{saved:.1f} ms (whole) / {saved_lazy:.1f} ms (frame by frame) of system time per file.",
    ]
    return [
        "",
        "Processor read path in a spawned process as the worker pool starts them: malloc as today (not tuned in "
        "the workers) and tuned as in the services (`processor_service.malloc.tune_malloc`); best of "
        f"{ROUNDS} alternating rounds for the samples. Whole (the baseline): the plaintext read into memory "
        "through the decrypting reader and parsed once with its pixel data (`analyse(bytes)`). Frame by frame "
        "(`processor_service.work.measure_blob`): pydicom parses the header through the reader, then reads "
        "and decodes one frame at a time (`iter_pixels` on the file object).",
        "",
        "| file | whole | frame by frame | frame by frame / whole |",
        "|---|---|---|---|",
        *rows,
    ]


def main() -> None:
    load = os.getloadavg()[0]
    ring = Keyring.from_spec(generate_key_spec("bench"))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        processor_lines = processor(BlobStore(root / "processor", ring), root)
        tune_malloc()
        lines = [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs (load average {load:.1f} before the "
            f"run), Python {platform.python_version()}.",
            "",
            *streaming(ring),
            *whole_files(ring, root),
            *processor_lines,
        ]
    print("\n".join(lines))
    write_section("bench_crypto", "Blob encryption at rest (`bench_crypto`)", lines, INTRO)


if __name__ == "__main__":
    main()
