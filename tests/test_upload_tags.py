"""Tag rewriting on streamed copies (common/uploader/tags): the copy carries the new tags and the original's exact
pixel bytes, the original never changes, memory stays bounded for a big file, and bad rules are refused."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import tracemalloc
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from common.cli.main import _Parser
from common.dicom.validation import validate_file
from common.uploader.tags.options import add_tag_options, plan_from_args
from common.uploader.tags.report import check_files, checks_document, run_check_mode
from common.uploader.tags.rewrite import RewrittenFile, TagRewriteError, TagRewriter
from common.uploader.tags.rules import TagRuleError, parse_mapping, parse_set_tag
from common.uploader.tags.template import TemplateError, parse_template
from samples.big_instance import big_instance_parts

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MIB = 1024 * 1024


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def stream(copy: RewrittenFile) -> bytes:
    return b"".join([chunk async for chunk in copy.chunks(64 * 1024)])


def rules(*words: str) -> list:  # type: ignore[type-arg]
    return [parse_set_tag(word) for word in words]


@pytest.fixture(name="sample")
def sample_fixture(tmp_path: Path) -> Path:
    path = tmp_path / "sample-01.dcm"
    path.write_bytes((SAMPLES / "sample-01-dicom.dcm").read_bytes())
    return path


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dicomflow upload")
    add_tag_options(p)
    return p


def plan(*words: str):  # type: ignore[no-untyped-def]
    p = parser()
    return plan_from_args(p.parse_args(list(words)), p)


async def test_copy_has_new_tags_and_the_original_pixel_bytes_and_the_original_is_unchanged(sample: Path) -> None:
    before = sha256_of(sample)
    rewriter = TagRewriter(
        rules("PatientID={sample_id}-{attempt}", "StudyDescription={assay} on {StudyDate}", "SeriesNumber=7"),
        {"sample_id": "S-0042", "attempt": "2", "assay": "CBC"},
    )
    copy = await rewriter.prepare(sample)
    data = await stream(copy)

    assert len(data) == copy.size
    assert await copy.sha256() == hashlib.sha256(data).hexdigest()
    written = pydicom.dcmread(io.BytesIO(data))
    original = pydicom.dcmread(sample)
    assert (written.PatientID, written.StudyDescription, written.SeriesNumber) == ("S-0042-2", "CBC on 20090925", 7)
    assert written.PixelData == original.PixelData
    original_bytes = sample.read_bytes()
    assert data[copy.size - (len(original_bytes) - copy.rest_offset) :] == original_bytes[copy.rest_offset :]
    assert written.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    untouched = {e.tag for e in original if e.tag.element != 0} - {0x00100020, 0x00081030, 0x00200011}
    assert all(written[tag].value == original[tag].value for tag in untouched)
    assert [(c.keyword, c.current, c.new) for c in copy.changes] == [
        ("PatientID", "Anon474899", "S-0042-2"),
        ("StudyDescription", "", "CBC on 20090925"),
        ("SeriesNumber", "18", "7"),
    ]
    assert sha256_of(sample) == before


async def test_file_meta_group_length_is_recomputed_and_sop_instance_uid_follows(sample: Path) -> None:
    uid = generate_uid()
    copy = await TagRewriter(rules(f"SOPInstanceUID={uid}"), {}).prepare(sample)
    written = pydicom.dcmread(io.BytesIO(await stream(copy)))
    assert written.SOPInstanceUID == uid == written.file_meta.MediaStorageSOPInstanceUID
    meta = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(pydicom.filebase.DicomFileLike(meta), written.file_meta)
    assert written.file_meta.FileMetaInformationGroupLength == len(meta.getvalue()) - 12


async def test_a_file_whose_tags_already_agree_is_sent_as_it_is(sample: Path) -> None:
    copy = await TagRewriter(rules("PatientID=Anon474899"), {}).prepare(sample)
    assert copy.changes == [] and copy.header_size == 0
    assert await copy.sha256() == sha256_of(sample)


async def test_a_file_without_pixel_data_is_rewritten_whole(tmp_path: Path) -> None:
    path = tmp_path / "sr.dcm"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.PatientID, ds.Modality, ds.ContentDate = "old", "SR", "20240101"
    ds.save_as(path, enforce_file_format=True)
    before = sha256_of(path)

    copy = await TagRewriter(rules("PatientID=new"), {}).prepare(path)
    written = pydicom.dcmread(io.BytesIO(await stream(copy)))

    assert copy.rest_offset == path.stat().st_size
    assert (written.PatientID, written.ContentDate, "PixelData" in written) == ("new", "20240101", False)
    assert sha256_of(path) == before


async def test_a_deflated_file_is_inflated_and_deflated_again_with_its_new_tags(tmp_path: Path, sample: Path) -> None:
    path = tmp_path / "deflated.dcm"
    ds = pydicom.dcmread(sample)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    before = sha256_of(path)
    uid = generate_uid()

    copy = await TagRewriter(rules("PatientID=D-1", f"SOPInstanceUID={uid}"), {}).prepare(path)
    data = await stream(copy)

    assert len(data) == copy.size and len(data) % 2 == 0
    assert await copy.sha256() == hashlib.sha256(data).hexdigest()
    written = pydicom.dcmread(io.BytesIO(data))
    assert written.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert (written.PatientID, written.SOPInstanceUID, written.file_meta.MediaStorageSOPInstanceUID) == (
        "D-1",
        uid,
        uid,
    )
    assert written.PixelData == ds.PixelData and written.StudyDate == ds.StudyDate
    assert validate_file(io.BytesIO(data)).sop_instance_uid == uid  # ingest's own check takes it
    assert sha256_of(path) == before
    assert await stream(await TagRewriter(rules("PatientID=D-1", f"SOPInstanceUID={uid}"), {}).prepare(path)) == data


async def test_a_deflated_report_without_pixel_data_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "sr.dcm"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.PatientID, ds.Modality, ds.TextValue = "old", "SR", " ".join(["finding"] * 2000)
    ds.save_as(path, enforce_file_format=True)

    copy = await TagRewriter(rules("PatientID=new"), {}).prepare(path)
    written = pydicom.dcmread(io.BytesIO(await stream(copy)))

    assert (written.PatientID, written.TextValue) == ("new", ds.TextValue)


async def test_a_big_deflated_file_is_rewritten_in_bounded_memory(tmp_path: Path) -> None:
    FRAMES = 64  # noqa: N806
    header, frame = big_instance_parts(FRAMES)  # 32 MiB of pixel data, deflated on disk
    path = tmp_path / "big-deflated.dcm"
    (tmp_path / "head.dcm").write_bytes(header)
    meta = pydicom.filereader.read_file_meta_info(tmp_path / "head.dcm")
    prefix_end = 128 + 4 + 12 + meta.FileMetaInformationGroupLength  # where the dataset begins
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write(header[:128] + b"DICM")
    pydicom.filewriter.write_file_meta_info(buffer, meta)
    deflater = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    with path.open("wb") as handle:
        handle.write(buffer.getvalue())
        handle.write(deflater.compress(header[prefix_end:]))
        for _ in range(FRAMES):
            handle.write(deflater.compress(frame))
        tail = deflater.flush()
        handle.write(tail + (b"\0" if (handle.tell() + len(tail)) % 2 else b""))
    del header

    tracemalloc.start()
    try:
        copy = await TagRewriter(rules("PatientID=BIG-D"), {}).prepare(path)
        sent, total = hashlib.sha256(), 0
        async for chunk in copy.chunks():
            sent.update(chunk)
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == copy.size and sent.hexdigest() == await copy.sha256()
    assert peak < FRAMES * len(frame) / 5, f"peak {peak / MIB:.1f} MiB"  # measured: 3.8 MiB


async def test_a_file_that_is_not_dicom_is_refused_alone_and_a_truncated_one_keeps_its_cut(
    tmp_path: Path, sample: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(sample.read_bytes()[:100_000])
    rewriter = TagRewriter(rules("PatientID=x"), {})
    checks = await check_files(rewriter, [text, cut, sample])
    assert [bool(c.error) for c in checks] == [True, False, False]
    assert checks[0].error == "not a DICOM Part 10 file (no 'DICM' prefix after the preamble)"
    copy = await rewriter.prepare(cut)  # the server judges the copy, which lacks what the original lacks
    assert (await stream(copy))[copy.header_size :] == cut.read_bytes()[copy.rest_offset :]


async def test_text_in_a_character_set_that_holds_it_is_written(sample: Path, tmp_path: Path) -> None:
    utf8 = tmp_path / "utf8.dcm"
    ds = pydicom.dcmread(sample)
    del ds.SpecificCharacterSet
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.save_as(utf8)
    copy = await TagRewriter(rules("PatientName=Łukasiewicz^Jan"), {}).prepare(utf8)
    assert str(pydicom.dcmread(io.BytesIO(await stream(copy))).PatientName) == "Łukasiewicz^Jan"


async def test_an_original_changed_after_it_was_read_is_not_streamed(sample: Path) -> None:
    copy = await TagRewriter(rules("PatientID=x"), {}).prepare(sample)
    with sample.open("ab") as handle:
        handle.write(b"\0\0")
    with pytest.raises(TagRewriteError, match="changed after its tags were read"):
        await stream(copy)


async def test_a_big_multi_frame_file_is_rewritten_in_bounded_memory(tmp_path: Path) -> None:
    header, frame = big_instance_parts(400)  # 400 frames of 512x512x16 bits: 200 MiB of pixel data
    path = tmp_path / "big.dcm"
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        handle.write(header)
        digest.update(header)
        for _ in range(400):
            handle.write(frame)
            digest.update(frame)
    original_digest, size = digest.hexdigest(), path.stat().st_size
    del header, frame
    assert size > 200 * MIB

    tracemalloc.start()
    try:
        copy = await TagRewriter(rules("PatientID=BIG-1"), {}).prepare(path)
        sent = hashlib.sha256()
        tail = hashlib.sha256()
        seen = 0
        async for chunk in copy.chunks():
            sent.update(chunk)
            tail_start = max(0, copy.header_size - seen)
            tail.update(chunk[tail_start:])
            seen += len(chunk)
        first_pass = await copy.sha256()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert seen == copy.size and first_pass == sent.hexdigest()
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB for a {size / MIB:.0f} MiB file"
    rest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(copy.rest_offset)
        while block := handle.read(4 * MIB):
            rest.update(block)
    assert tail.hexdigest() == rest.hexdigest()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == original_digest


def test_templates_take_bare_names_only() -> None:
    assert parse_template("{sample_id}-{attempt} {{x}}").render({"sample_id": "S", "attempt": "3"}) == "S-3 {x}"
    for bad in ("{a.b}", "{a[0]}", "{a!r}", "{a:>9}", "{}", "{0}", "{a", "a}"):
        with pytest.raises(TemplateError):
            parse_template(bad)


def test_an_unknown_keyword_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        plan("--set-tag", "PatientIdentifier=1")
    assert exit_info.value.code == 2
    with pytest.raises(TagRuleError, match="not a DICOM keyword"):
        parse_set_tag("(0010,0020)=x")


def test_a_value_invalid_for_the_vr_is_a_usage_error() -> None:
    for word in ("StudyDate=2024-01-31", "StudyDate=20241301", "Rows=70000", "PatientID=" + "x" * 65):
        with pytest.raises(SystemExit) as exit_info:
            plan("--set-tag", word)
        assert exit_info.value.code == 2, word
    with pytest.raises(TagRuleError, match="not a valid DA"):
        TagRewriter(rules("StudyDate={collected}"), {"collected": "31/01/2024"})


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("TransferSyntaxUID=1.2.3", "cannot be set"),
        ("PixelData=x", "cannot be set"),
        ("SpecificCharacterSet=ISO_IR 100", "cannot be set"),
        ("ReferencedSeriesSequence=x", "cannot be set from text"),
        ("PatientID", "expected KEYWORD=VALUE"),
        ("PatientID={sample_id.__class__}", "bare name"),
    ],
)
def test_rules_that_cannot_be_applied_are_refused(word: str, reason: str) -> None:
    with pytest.raises(TagRuleError, match=reason):
        parse_set_tag(word)


def test_template_names_must_be_known_before_anything_is_read() -> None:
    with pytest.raises(TagRuleError, match="give --sample-id"):
        TagRewriter(rules("PatientID={sample_id}"), {"attempt": "1"})
    with pytest.raises(TagRuleError, match="neither"):
        TagRewriter(rules("PatientID={lab_number}"), {"attempt": "1"})


def test_mapping_file_lines_and_comments_and_set_tag_winning(tmp_path: Path) -> None:
    mapping = tmp_path / "map.txt"
    mapping.write_text("# lab mapping\n\nPatientID = {sample_id}-{attempt}\n  AccessionNumber=A{attempt}  \n")
    options = plan("--mapping", str(mapping), "--set-tag", "AccessionNumber=Z", "--sample-id", "S1", "--attempt", "4")
    assert options is not None
    assert [(r.keyword, r.template.source, r.origin) for r in options.rules] == [
        ("PatientID", "{sample_id}-{attempt}", f"{mapping} line 3"),
        ("AccessionNumber", "Z", "--set-tag AccessionNumber"),
    ]
    with pytest.raises(TagRuleError, match="line 2: expected"):
        parse_mapping("PatientID = a\nnot a rule\n", "m")
    with pytest.raises(TagRuleError, match="already set by m line 1"):
        plan_mapping_twice = parse_mapping("PatientID = a\nPatientID = b\n", "m")
        from common.uploader.tags.rules import merge_rules

        merge_rules(plan_mapping_twice)


def test_the_example_mapping_file_parses() -> None:
    keywords = [rule.keyword for rule in parse_mapping((SAMPLES / "tag-mapping.example").read_text(), "example")]
    assert keywords == ["PatientID", "PatientName", "AccessionNumber", "StudyDescription"]


def test_options_without_rules_are_usage_errors() -> None:
    assert plan() is None
    for words in (["--metadata-url", "http://127.0.0.1:1/x"], ["--dry-run"], ["--verify-only"]):
        with pytest.raises(SystemExit) as exit_info:
            plan(*words)
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        plan("--set-tag", "PatientID=x", "--metadata-url", "http://h/{lab}")
    with pytest.raises(SystemExit):
        plan("--set-tag", "PatientID=x", "--metadata-url", "http://h/{sample_id}")


async def test_text_the_file_character_set_cannot_hold_is_refused(sample: Path) -> None:
    with pytest.raises(TagRewriteError, match="character set"):
        await TagRewriter(rules("PatientName=Łukasiewicz^Jan"), {}).prepare(sample)  # ISO_IR 100 has no Ł


async def test_verify_lists_each_disagreement_and_dry_run_every_change(
    tmp_path: Path, sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agreeing = tmp_path / "agreeing.dcm"
    ds = pydicom.dcmread(sample)
    ds.PatientID = "S1-1"
    ds.save_as(agreeing)
    originals = {p: sha256_of(p) for p in (sample, agreeing)}
    options = plan("--set-tag", "PatientID={sample_id}-{attempt}", "--sample-id", "S1", "--verify-only")
    assert options is not None
    rewriter = TagRewriter(options.rules, options.context)

    assert await run_check_mode(options, rewriter, [sample, agreeing], as_json=False) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{sample}: PatientID: 'Anon474899' -> 'S1-1'",
        "1 of 2 files disagree with the tag rules; 0 cannot be rewritten",
    ]

    dry = plan("--set-tag", "PatientID={sample_id}-{attempt}", "--sample-id", "S1", "--dry-run")
    assert dry is not None
    assert await run_check_mode(dry, rewriter, [sample, agreeing], as_json=True) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["mode"] == "dry-run" and document["disagreeing"] == 1
    assert document["checks"][0]["changes"] == [{"keyword": "PatientID", "current": "Anon474899", "expected": "S1-1"}]
    assert document["checks"][1]["changes"] == []
    assert checks_document(await check_files(rewriter, [agreeing]), "verify-only")["disagreeing"] == 0
    assert {p: sha256_of(p) for p in originals} == originals


async def test_concurrent_copies_of_one_file_stream_the_same_bytes(sample: Path) -> None:
    copy = await TagRewriter(rules("PatientID=x"), {}).prepare(sample)
    first, second = await asyncio.gather(stream(copy), stream(copy))
    assert first == second and os.path.getsize(sample) - copy.rest_offset == len(first) - copy.header_size


async def test_the_log_names_the_changed_keywords_and_never_their_values(sample: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        await TagRewriter(rules("PatientName=Doe^Jane", "PatientID=Anon474899"), {}).prepare(sample)
    [event] = [e for e in logs if e["event"].startswith("tags_")]
    assert event["event"] == "tags_rewritten" and event["keywords"] == ["PatientName"]
    assert "Doe" not in repr(logs)


@pytest.mark.parametrize("syntax", [pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian])
async def test_other_transfer_syntaxes_keep_their_encoding(tmp_path: Path, sample: Path, syntax: str) -> None:
    path = tmp_path / "other.dcm"
    ds = pydicom.dcmread(sample)
    ds.file_meta.TransferSyntaxUID = syntax
    big = syntax == pydicom.uid.ExplicitVRBigEndian
    ds.preamble = b"\0" * 128
    pydicom.dcmwrite(path, ds, implicit_vr=not big, little_endian=not big, force_encoding=big)
    original = pydicom.dcmread(path)

    copy = await TagRewriter(rules("PatientID=X-1", "Rows=512"), {}).prepare(path)
    written = pydicom.dcmread(io.BytesIO(await stream(copy)))

    assert written.file_meta.TransferSyntaxUID == syntax and written.PatientID == "X-1"
    assert written.PixelData == original.PixelData and written.Rows == 512
    assert [c.keyword for c in copy.changes] == ["PatientID"]
