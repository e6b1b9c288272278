"""The instance generator the upload tests and the benchmark use: valid files, fresh UIDs, grouped studies."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pydicom

from common.dicom.validation import validate_file
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix, main, write_files, write_zip


def test_generated_instances_are_valid_with_fresh_grouped_uids(tmp_path: Path) -> None:
    paths = write_files(iter_mix([(SAMPLE_01, 5), (SAMPLE_02, 2)], group=2), tmp_path)
    assert [p.name for p in paths] == [f"sample-01-dicom-{i:05d}.dcm" for i in range(5)] + [
        f"sample-02-dicom-{i:05d}.dcm" for i in range(2)
    ]
    metas = [validate_file(p) for p in paths]
    original = pydicom.dcmread(SAMPLE_01, stop_before_pixels=True)
    assert len({m.sop_instance_uid for m in metas}) == 7
    assert original.SOPInstanceUID not in {m.sop_instance_uid for m in metas}
    same_series = [m.series_instance_uid == metas[0].series_instance_uid for m in metas[:5]]
    assert same_series == [True, True, False, False, False]
    assert len({m.study_instance_uid for m in metas}) == 4  # groups of 2: 3 from sample-01, 1 from sample-02
    copy = pydicom.dcmread(paths[0])
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    assert copy.PixelData == pydicom.dcmread(SAMPLE_01).PixelData


def test_zip_and_command_line(tmp_path: Path, capsys) -> None:
    archive = tmp_path / "a.zip"
    assert write_zip(iter_mix([(SAMPLE_01, 3)]), archive) == 3
    with zipfile.ZipFile(archive) as zf:
        assert len(zf.namelist()) == 3
    main([str(tmp_path / "out"), "--from", "sample-02-dicom.dcm=2"])
    assert "2 instances" in capsys.readouterr().out
    assert len(list((tmp_path / "out").iterdir())) == 2
