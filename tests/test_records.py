"""Patient and study records: validating properties, a logged diagnosis change, and loading from DICOM."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from structlog.testing import capture_logs

from common.brief.records import PatientRecord, RecordValueError, StudyRecord
from common.dicom.tags import DicomNotFound


def test_a_patient_keeps_valid_values() -> None:
    patient = PatientRecord(
        name="Doe^Jane",
        age=42,
        birth_date="19820315",
        sex="f",
        weight=61,
        patient_id="P-1",
        patient_id_type="TEXT",
        diagnosis="none",
    )

    assert patient.name == "Doe^Jane"
    assert patient.age == 42
    assert patient.birth_date == dt.date(1982, 3, 15)
    assert patient.sex == "F"
    assert patient.weight == 61.0
    assert (patient.patient_id, patient.patient_id_type, patient.diagnosis) == ("P-1", "TEXT", "none")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("age", -1, ">= 0"),
        ("age", "3", "whole number"),
        ("age", True, "whole number"),
        ("age", 2.5, "whole number"),
        ("sex", "X", "M, F, O"),
        ("sex", 1, "M, F, O"),
        ("weight", 0, "> 0"),
        ("weight", -70.5, "> 0"),
        ("weight", "70", "> 0"),
        ("weight", float("nan"), "> 0"),
        ("birth_date", "2020-13-01", "a date"),
        ("birth_date", 20200101, "a date"),
        ("name", 5, "text"),
    ],
)
def test_a_setter_refuses_a_value_that_breaks_its_rule(field: str, value: object, rule: str) -> None:
    patient = PatientRecord(age=30, sex="M", weight=70.0, birth_date=dt.date(1990, 1, 1), name="A")
    before = getattr(patient, field)

    with pytest.raises(RecordValueError, match=rule):
        setattr(patient, field, value)
    with pytest.raises(RecordValueError, match=rule):
        PatientRecord(**{field: value})  # type: ignore[arg-type]
    assert getattr(patient, field) == before


def test_update_diagnosis_logs_the_old_and_the_new_value() -> None:
    patient = PatientRecord(diagnosis="suspected fracture")

    with capture_logs() as logs:
        patient.update_diagnosis("hairline fracture")

    assert patient.diagnosis == "hairline fracture"
    assert logs == [
        {"event": "diagnosis_updated", "log_level": "info", "old": "suspected fracture", "new": "hairline fracture"}
    ]


def test_diagnosis_has_no_setter() -> None:
    with pytest.raises(AttributeError):
        PatientRecord().diagnosis = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("number_of_frames", 0, ">= 1"),
        ("series_number", "1", "whole number"),
        ("study_instance_uid", "1.2.abc", "digits and dots"),
        ("study_instance_uid", "1." * 40 + "1", "at most 64"),
        ("study_time", "25:00", "a time"),
        ("study_date", "yesterday", "a date"),
        ("modality", "M/R", "DICOM code"),
    ],
)
def test_a_study_setter_refuses_a_value_that_breaks_its_rule(field: str, value: object, rule: str) -> None:
    with pytest.raises(RecordValueError, match=rule):
        setattr(StudyRecord(), field, value)


def test_study_times_and_dates_are_read_from_dicom_and_iso_text() -> None:
    study = StudyRecord(study_date="2009-09-25", study_time="141917.25")

    assert study.study_date == dt.date(2009, 9, 25)
    assert study.study_time == dt.time(14, 19, 17, 250000)
    study.study_time = "14:19"
    assert study.study_time == dt.time(14, 19)
    assert study.number_of_frames == 1


def _expected_from_pydicom(path: Path) -> dict[str, object]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    time = ds.get("StudyTime") or None
    return {
        "name": str(ds.PatientName),
        "patient_id": ds.PatientID,
        "birth_date": dt.datetime.strptime(ds.PatientBirthDate, "%Y%m%d").date() if ds.PatientBirthDate else None,
        "sex": ds.get("PatientSex") or None,
        "modality": ds.Modality,
        "study_date": dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date(),
        "study_time": dt.datetime.strptime(time, "%H%M%S").time() if time else None,
        "study_instance_uid": ds.StudyInstanceUID,
        "series_number": int(ds.SeriesNumber),
        "number_of_frames": int(ds.get("NumberOfFrames") or 1),
    }


@pytest.mark.parametrize("name", ["sample-01-dicom.dcm", "sample-02-dicom.dcm"])
def test_from_dicom_loads_every_field_the_file_holds(samples_dir: Path, name: str) -> None:
    path = samples_dir / name

    study = StudyRecord.from_dicom(path)

    for field, value in _expected_from_pydicom(path).items():
        assert getattr(study, field) == value, field
    assert (study.age, study.weight, study.diagnosis) == (None, None, None)


def test_the_96_frame_jpeg_sample_is_a_study_of_96_frames_that_decodes(samples_dir: Path) -> None:
    path = samples_dir / "sample-02-dicom.dcm"

    study = StudyRecord.from_dicom(path)
    pixels = pydicom.dcmread(path).pixel_array

    assert study.number_of_frames == 96
    assert pixels.shape == (96, 512, 512)
    assert pixels.dtype == np.uint8


def test_printing_a_study_shows_every_patient_and_study_field(samples_dir: Path) -> None:
    study = StudyRecord.from_dicom(samples_dir / "sample-02-dicom.dcm")
    study.update_diagnosis("stenosis")

    text = str(study)

    for label in (
        "name",
        "age",
        "birth date",
        "sex",
        "weight",
        "patient id",
        "patient id type",
        "diagnosis",
        "modality",
        "study date",
        "study time",
        "study instance uid",
        "series number",
        "number of frames",
    ):
        assert f"  {label} " in text, label
    for value in ("Rubo DEMO", "556342B", "1995-10-25", "stenosis", "XA", "1994-10-13", "14:19:17", "96"):
        assert value in text
    assert text.startswith("Patient:\n") and "\nStudy:\n" in text


def test_from_dicom_keeps_valid_values_and_logs_invalid_ones_without_their_value(
    samples_dir: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(samples_dir / "sample-01-dicom.dcm")
    ds.PatientAge = "045Y"
    ds.PatientSex = "F"
    ds.PatientWeight = "0"
    ds.TypeOfPatientID = "TEXT"
    ds.NumberOfFrames = "1"
    with warnings.catch_warnings():  # pydicom warns when writing the invalid time, as real files hold them
        warnings.simplefilter("ignore", UserWarning)
        ds.StudyTime = "251917"
        path = tmp_path / "edited.dcm"
        ds.save_as(path)

    with capture_logs() as logs:
        study = StudyRecord.from_dicom(path)

    assert (study.age, study.sex, study.weight, study.patient_id_type) == (45, "F", None, "TEXT")
    assert study.study_time is None
    ignored = [(entry["keyword"], entry["rule"]) for entry in logs if entry["event"] == "dicom_value_ignored"]
    assert ignored == [
        ("PatientWeight", "weight must be a number of kilograms > 0"),
        ("StudyTime", "study_time must be a time (HH:MM:SS or DICOM HHMMSS.FFFFFF)"),
    ]


@pytest.mark.parametrize(("age", "years"), [("045Y", 45), ("018M", 1), ("011M", 0), ("104W", 1), ("400D", 1)])
def test_dicom_age_strings_become_whole_years(samples_dir: Path, tmp_path: Path, age: str, years: int) -> None:
    ds = pydicom.dcmread(samples_dir / "sample-01-dicom.dcm", stop_before_pixels=True)
    ds.PatientAge = age
    path = tmp_path / "age.dcm"
    ds.save_as(path)

    assert StudyRecord.from_dicom(path).age == years


def test_from_dicom_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DicomNotFound):
        StudyRecord.from_dicom(tmp_path / "nope.dcm")
