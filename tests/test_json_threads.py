"""Threaded JSON processor: exact figures, never more than N workers alive, an intact shared log, bad elements."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from structlog.testing import capture_logs

from common.brief.json_threads import (
    WORKER_PREFIX,
    JsonFileError,
    SharedLog,
    process_elements,
    process_json_file,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """samples/make_large_json.py, loaded as a module."""
    spec = importlib.util.spec_from_file_location("make_large_json", ROOT / "samples" / "make_large_json.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python_figures(data: list[str]) -> tuple[float, float, int]:
    values = [int(token) for row in data for token in row.split()]
    maximum = max(values)
    return sum(values) / len(values), sum(v / maximum for v in values) / len(values), len(values)


def _log_records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]  # each line must parse on its own


def alive_workers() -> int:
    """Worker threads of the processor alive right now."""
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(WORKER_PREFIX))


def _gate(size: int) -> Callable[[], None]:
    """A call that blocks until `size` threads have called it (later calls pass straight through)."""
    lock = threading.Lock()
    opened = threading.Event()
    arrived = 0

    def arrive() -> None:
        nonlocal arrived
        with lock:
            arrived += 1
            if arrived >= size:
                opened.set()
        assert opened.wait(timeout=10), "the first batch of workers never ran together"

    return arrive


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("name", ["sample-03-00-json.json", "sample-04-json.json"])
def test_every_sample_element_is_normalised_printed_and_logged(samples_dir: Path, tmp_path: Path, name: str) -> None:
    elements = json.loads((samples_dir / name).read_text())
    printed: list[str] = []

    summary = process_json_file(samples_dir / name, tmp_path / "run.log", emit=printed.append)

    assert [result.key for result in summary.results] == list(elements)
    assert summary.failed == []
    records = {r["key"]: r for r in _log_records(tmp_path / "run.log") if r["event"] == "element_processed"}
    assert set(records) == set(elements)
    for result in summary.results:
        element = elements[result.key]
        before, after, size = _python_figures(element["data"])
        assert result.figures is not None
        assert result.figures.average_before == pytest.approx(before, rel=1e-12)
        assert result.figures.average_after == pytest.approx(after, rel=1e-12)
        assert result.figures.data_size == size
        assert (result.element_id, result.device_name) == (element["id"], element["deviceName"])
        record = records[result.key]
        assert (record["average_before"], record["average_after"], record["data_size"]) == (
            result.figures.average_before,
            result.figures.average_after,
            size,
        )
        assert record["thread"] == f"{WORKER_PREFIX}{result.key}"
        assert any(line.endswith(f"element {result.key}: id {element['id']}") for line in printed)


def test_never_more_than_four_workers_alive_and_all_elements_finish(generator: ModuleType, tmp_path: Path) -> None:
    elements = generator.make_elements(seed=5, elements=20, values=2_000)
    seen_in_workers: list[int] = []
    sampled: list[int] = []
    done = threading.Event()
    first_batch_in = _gate(4)

    def on_worker_start(key: str) -> None:
        seen_in_workers.append(alive_workers())
        first_batch_in()  # the first four wait for one another, so the limit is surely reached
        time.sleep(0.01)  # hold the slot so the others pile up behind the limit

    def sample() -> None:
        while not done.is_set():
            sampled.append(alive_workers())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample, name="sampler")
    sampler.start()
    try:
        with SharedLog(tmp_path / "run.log", "test") as log:
            results, peak = process_elements(elements, log, max_threads=4, emit=None, on_worker_start=on_worker_start)
    finally:
        done.set()
        sampler.join()

    assert len(seen_in_workers) == 20
    assert max(seen_in_workers) == 4  # the limit is reached ...
    assert max(sampled) <= 4  # ... and never passed, seen from outside too
    assert peak == 4
    assert [result.key for result in results] == [str(n) for n in range(1, 21)]
    assert all(result.figures is not None for result in results)
    assert alive_workers() == 0


@pytest.mark.parametrize("max_threads", [1, 2, 7])
def test_the_limit_follows_max_threads(generator: ModuleType, tmp_path: Path, max_threads: int) -> None:
    elements = generator.make_elements(seed=6, elements=10, values=100)
    seen: list[int] = []
    first_batch_in = _gate(max_threads)

    def on_worker_start(key: str) -> None:
        seen.append(alive_workers())
        first_batch_in()

    with SharedLog(tmp_path / "run.log", "test") as log:
        results, peak = process_elements(elements, log, max_threads, emit=None, on_worker_start=on_worker_start)

    assert max(seen) == peak == max_threads
    assert len(results) == 10


def test_a_new_worker_starts_as_soon_as_one_ends(generator: ModuleType, tmp_path: Path) -> None:
    """Element 1 holds its slot until element 6 has started: with a pool of 2, elements 2 to 6 can only get
    there by flowing through the other slot one after another, never waiting for element 1."""
    elements = generator.make_elements(seed=8, elements=6, values=100)
    last_started = threading.Event()
    started: list[str] = []
    held: list[bool] = []

    def on_worker_start(key: str) -> None:
        started.append(key)
        if key == "6":
            last_started.set()
        if key == "1":
            held.append(last_started.wait(60))  # 60 s: a liveness bound; a pool that waits never gets there

    with SharedLog(tmp_path / "run.log", "test") as log:
        results, _ = process_elements(elements, log, max_threads=2, emit=None, on_worker_start=on_worker_start)

    assert held == [True]
    assert sorted(started) == [str(n) for n in range(1, 7)]
    assert all(result.figures is not None for result in results)


def test_the_shared_log_keeps_every_line_whole_under_load(tmp_path: Path) -> None:
    path = tmp_path / "load.log"
    writers, lines_each = 8, 400
    payload = "x" * 20_000  # far beyond any write buffer, so a torn write would show

    def write_many(log: SharedLog, writer: int) -> None:
        for sequence in range(lines_each):
            log.write("load", writer=writer, sequence=sequence, payload=payload)

    with SharedLog(path, "load") as log:
        threads = [threading.Thread(target=write_many, args=(log, n)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    records = _log_records(path)
    assert len(records) == writers * lines_each
    for writer in range(writers):
        mine = [r["sequence"] for r in records if r["writer"] == writer]
        assert mine == list(range(lines_each))
    assert all(r["payload"] == payload for r in records)


def test_the_log_is_appended_and_each_run_is_told_apart(samples_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "run.log"

    first = process_json_file(samples_dir / "sample-03-00-json.json", path, emit=None)
    second = process_json_file(samples_dir / "sample-03-00-json.json", path, emit=None)

    records = _log_records(path)
    expected = ["run_started", "element_processed", "element_processed", "run_finished"]
    assert first.run_id != second.run_id
    assert [r["event"] for r in records if r["run"] == first.run_id] == expected
    assert [r["event"] for r in records if r["run"] == second.run_id] == expected
    assert [r["run"] for r in records] == [first.run_id] * 4 + [second.run_id] * 4
    assert records[-1]["processed"] == 2


def test_bad_elements_are_logged_with_their_reason_and_the_others_finish(samples_dir: Path, tmp_path: Path) -> None:
    good = json.loads((samples_dir / "sample-03-00-json.json").read_text())["1"]
    document = {
        "good": good,
        "word": {"id": "w", "data": ["1 2 three"], "deviceName": "MRI"},
        "empty": {"id": "e", "data": [], "deviceName": "MRI"},
        "blank": {"id": "b", "data": ["   "], "deviceName": "MRI"},
        "no-data": {"id": "n", "deviceName": "MRI"},
        "no-id": {"data": ["1 2"]},
        "zero": {"id": "z", "data": ["0 0 0"], "deviceName": "MRI"},
        "list": [1, 2, 3],
        "text": "not an element",
        "numbers": {"id": "x", "data": [1, 2, 3]},
        "good2": good,
    }
    path = _write(tmp_path / "bad.json", document)

    with capture_logs() as logs:
        summary = process_json_file(path, tmp_path / "run.log", emit=None)

    reasons = {result.key: result.error for result in summary.results}
    assert reasons["good"] is None and reasons["good2"] is None
    expected = {
        "word": "non-numeric value: 'three'",
        "empty": "data is empty",
        "blank": "holds no numbers",
        "no-data": "no 'data' key",
        "no-id": "no 'id' key",
        "zero": "maximum of data is 0",
        "list": "must be a JSON object, not a list",
        "text": "must be a JSON object, not a str",
        "numbers": "list of strings",
    }
    for key, fragment in expected.items():
        assert fragment in (reasons[key] or ""), key
    logged = {r["key"]: r["reason"] for r in _log_records(tmp_path / "run.log") if r["event"] == "element_failed"}
    assert logged == {key: reasons[key] for key in expected}
    assert {entry["key"] for entry in logs if entry["event"] == "element_failed"} == set(expected)


def test_a_worker_that_raises_unexpectedly_only_fails_its_element(samples_dir: Path, tmp_path: Path) -> None:
    elements = json.loads((samples_dir / "sample-04-json.json").read_text())

    def explode(key: str) -> None:
        if key == "3":
            raise RuntimeError("boom")

    with SharedLog(tmp_path / "run.log", "test") as log:
        results, _ = process_elements(elements, log, emit=None, on_worker_start=explode)

    failed = [(r.key, r.error) for r in results if r.error]
    assert failed == [("3", "unexpected RuntimeError: boom")]
    assert len(results) == 50
    logged = [r for r in _log_records(tmp_path / "run.log") if r["event"] == "element_failed"]
    assert [(r["key"], r["reason"]) for r in logged] == failed


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "nope.json", "does not exist"),
        (lambda d: d, "is a folder"),
        (lambda d: _write(d / "list.json", [1, 2]), "must hold a JSON object"),
        (lambda d: (d / "text.json", (d / "text.json").write_text("{not json"))[0], "is not valid JSON"),
        (lambda d: (d / "bin.json", (d / "bin.json").write_bytes(b"\xff\xfe\x00"))[0], "is not valid JSON"),
    ],
)
def test_a_file_that_cannot_be_processed_is_refused(tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    with pytest.raises(JsonFileError, match=reason):
        process_json_file(make(tmp_path), tmp_path / "run.log", emit=None)


def test_a_log_that_cannot_be_opened_is_refused(samples_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(JsonFileError, match="cannot open the log file"):
        process_json_file(samples_dir / "sample-03-00-json.json", tmp_path, emit=None)


def test_max_threads_must_be_positive(tmp_path: Path) -> None:
    with SharedLog(tmp_path / "run.log", "test") as log, pytest.raises(ValueError, match="max_threads"):
        process_elements({}, log, max_threads=0)


@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The brief's large file, generated by the real script with its default sizes."""
    path = tmp_path_factory.mktemp("large") / "sample-03-01-json.json"
    subprocess.run([sys.executable, str(ROOT / "samples" / "make_large_json.py"), str(path)], check=True)
    yield path


def test_the_generator_writes_the_brief_s_large_file(large_file: Path) -> None:
    elements = json.loads(large_file.read_text())

    assert list(elements) == [str(n) for n in range(1, 21)]
    for key, element in elements.items():
        assert element["id"] == f"aabbcc{key}"
        assert element["deviceName"] in ("RX 1", "CT SCAN", "MRI")
        values = [int(token) for row in element["data"] for token in row.split()]
        assert len(values) == 250_000
        assert max(values) == 100 and min(values) >= 0


def test_the_generator_is_deterministic(generator: ModuleType, tmp_path: Path) -> None:
    first = generator.write(tmp_path / "a.json", seed=11, elements=3, values=1_000).read_bytes()
    second = generator.write(tmp_path / "b.json", seed=11, elements=3, values=1_000).read_bytes()
    other = generator.write(tmp_path / "c.json", seed=12, elements=3, values=1_000).read_bytes()

    assert first == second != other
    assert all(max(int(t) for row in e["data"] for t in row.split()) == 100 for e in json.loads(first).values())


def test_the_large_file_is_processed_exactly_with_an_intact_log(large_file: Path, tmp_path: Path) -> None:
    elements = json.loads(large_file.read_text())

    summary = process_json_file(large_file, tmp_path / "run.log", emit=None)

    assert summary.failed == [] and summary.peak_threads == 4
    for result in summary.results:
        before, after, size = _python_figures(elements[result.key]["data"])
        assert result.figures is not None
        assert result.figures.average_before == pytest.approx(before, rel=1e-12)
        assert result.figures.average_after == pytest.approx(after, rel=1e-9)
        assert result.figures.data_size == size == 250_000
    events = [r["event"] for r in _log_records(tmp_path / "run.log")]
    assert events == ["run_started", *["element_processed"] * 20, "run_finished"]
