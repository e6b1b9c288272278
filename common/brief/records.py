"""Patient and study records (the brief's exercise 4) with validating properties.

Every field may be unknown (None), because real files often leave attributes empty; a value that
is given must be valid, or the setter raises :class:`RecordValueError`. `StudyRecord.from_dicom`
loads everything the file holds; a value in the file that breaks a rule (a weight of 0, an age of
`abc`) is logged and left unknown rather than refusing the whole file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from typing import Any, ClassVar

from common.app.logs import get_logger

log = get_logger(__name__)

SEXES = ("M", "F", "O")
_AGE_STRING = re.compile(r"(\d{3})([DWMY])")
_DAYS_PER_UNIT = {"D": 1, "W": 7, "M": 365.2425 / 12, "Y": 365.2425}
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DICOM_TIME = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")


class RecordValueError(ValueError):
    """A field was given a value that breaks its rule; the message names the field, the rule and the value."""

    def __init__(self, field: str, rule: str, value: object) -> None:
        super().__init__(f"{field} must be {rule}, got {value!r}")
        self.field = field
        self.rule = rule  # without the value, so it can be logged without patient data


def parse_date(value: dt.date | str, field: str) -> dt.date:
    """A date from a `date`, an ISO string (`1995-10-25`) or a DICOM DA string (`19951025`)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        for fmt in ("%Y-%m-%d", "%Y%m%d"):
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
    raise RecordValueError(field, "a date (YYYY-MM-DD or YYYYMMDD)", value)


def parse_time(value: dt.time | str, field: str) -> dt.time:
    """A time from a `time`, an ISO string (`14:19:17`) or a DICOM TM string (`141917.5`)."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str) and (match := _DICOM_TIME.fullmatch(value.strip())) is not None:
        hour, minute, second, fraction = match.groups()
        try:
            return dt.time(int(hour), int(minute or 0), int(second or 0), int((fraction or "0").ljust(6, "0")))
        except ValueError:
            pass
    raise RecordValueError(field, "a time (HH:MM:SS or DICOM HHMMSS.FFFFFF)", value)


def parse_age_string(value: str) -> int:
    """Whole years from a DICOM AS value (`045Y`, `018M`, `003W`, `010D`)."""
    match = _AGE_STRING.fullmatch(value.strip())
    if match is None:
        raise RecordValueError("age", "a DICOM age string like 045Y", value)
    number, unit = int(match[1]), match[2]
    return int(number * _DAYS_PER_UNIT[unit] // 365.2425) if unit != "Y" else number


def _optional_text(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordValueError(field, "text", value)
    return value.strip() or None


class PatientRecord:
    """A patient: name, age, birth date, sex, weight, patient ID and its type, diagnosis."""

    _PATIENT_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "age",
        "birth_date",
        "sex",
        "weight",
        "patient_id",
        "patient_id_type",
        "diagnosis",
    )

    def __init__(
        self,
        name: str | None = None,
        age: int | None = None,
        birth_date: dt.date | str | None = None,
        sex: str | None = None,
        weight: float | None = None,
        patient_id: str | None = None,
        patient_id_type: str | None = None,
        diagnosis: str | None = None,
    ) -> None:
        self.name = name
        self.age = age
        self.birth_date = birth_date
        self.sex = sex
        self.weight = weight
        self.patient_id = patient_id
        self.patient_id_type = patient_id_type
        self._diagnosis = _optional_text(diagnosis, "diagnosis")

    @property
    def name(self) -> str | None:
        """The patient's name as written in the source (DICOM `Family^Given` is kept as is)."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = _optional_text(value, "name")

    @property
    def age(self) -> int | None:
        """Age in whole years, >= 0."""
        return self._age

    @age.setter
    def age(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise RecordValueError("age", "a whole number of years >= 0", value)
        self._age = value

    @property
    def birth_date(self) -> dt.date | None:
        """Date of birth."""
        return self._birth_date

    @birth_date.setter
    def birth_date(self, value: dt.date | str | None) -> None:
        self._birth_date = None if value is None else parse_date(value, "birth_date")

    @property
    def sex(self) -> str | None:
        """`M`, `F` or `O` (other), as in DICOM."""
        return self._sex

    @sex.setter
    def sex(self, value: str | None) -> None:
        if value is None:
            self._sex = None
            return
        code = value.strip().upper() if isinstance(value, str) else value
        if code not in SEXES:
            raise RecordValueError("sex", "one of M, F, O", value)
        self._sex = code

    @property
    def weight(self) -> float | None:
        """Weight in kilograms, > 0."""
        return self._weight

    @weight.setter
    def weight(self, value: float | None) -> None:
        if value is None:
            self._weight = None
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
            raise RecordValueError("weight", "a number of kilograms > 0", value)
        self._weight = float(value)

    @property
    def patient_id(self) -> str | None:
        """The identifier given by the issuer (DICOM PatientID)."""
        return self._patient_id

    @patient_id.setter
    def patient_id(self, value: str | None) -> None:
        self._patient_id = _optional_text(value, "patient_id")

    @property
    def patient_id_type(self) -> str | None:
        """What kind of identifier `patient_id` is (DICOM TypeOfPatientID: TEXT, RFID, BARCODE)."""
        return self._patient_id_type

    @patient_id_type.setter
    def patient_id_type(self, value: str | None) -> None:
        self._patient_id_type = _optional_text(value, "patient_id_type")

    @property
    def diagnosis(self) -> str | None:
        """The current diagnosis; change it with :meth:`update_diagnosis` so the change is logged."""
        return self._diagnosis

    def update_diagnosis(self, new: str) -> None:
        """Replace the diagnosis and log the change from the old value to the new one."""
        old = self._diagnosis
        self._diagnosis = _optional_text(new, "diagnosis")
        log.info("diagnosis_updated", old=old, new=self._diagnosis)

    def to_dict(self) -> dict[str, Any]:
        """Every field, dates and times as ISO strings, ready for JSON."""
        return {field: _plain(getattr(self, field)) for field in self._fields()}

    def _fields(self) -> tuple[str, ...]:
        return self._PATIENT_FIELDS

    def __str__(self) -> str:
        fields = self.to_dict()
        return _render("Patient", {key: fields[key] for key in self._PATIENT_FIELDS})

    def __repr__(self) -> str:
        values = ", ".join(f"{key}={value!r}" for key, value in self.to_dict().items())
        return f"{type(self).__name__}({values})"


class StudyRecord(PatientRecord):
    """A patient's study: modality, study date and time, study instance UID, series number, frames."""

    _STUDY_FIELDS: ClassVar[tuple[str, ...]] = (
        "modality",
        "study_date",
        "study_time",
        "study_instance_uid",
        "series_number",
        "number_of_frames",
    )

    def __init__(
        self,
        *,
        modality: str | None = None,
        study_date: dt.date | str | None = None,
        study_time: dt.time | str | None = None,
        study_instance_uid: str | None = None,
        series_number: int | None = None,
        number_of_frames: int = 1,
        **patient: Any,
    ) -> None:
        super().__init__(**patient)
        self.modality = modality
        self.study_date = study_date
        self.study_time = study_time
        self.study_instance_uid = study_instance_uid
        self.series_number = series_number
        self.number_of_frames = number_of_frames

    @property
    def modality(self) -> str | None:
        """DICOM modality code (MR, CT, XA, ...), upper case."""
        return self._modality

    @modality.setter
    def modality(self, value: str | None) -> None:
        text = _optional_text(value, "modality")
        if text is not None and not re.fullmatch(r"[A-Z0-9_ ]{1,16}", text.upper()):
            raise RecordValueError("modality", "a DICOM code of up to 16 letters and digits", value)
        self._modality = text.upper() if text is not None else None

    @property
    def study_date(self) -> dt.date | None:
        """Date the study started."""
        return self._study_date

    @study_date.setter
    def study_date(self, value: dt.date | str | None) -> None:
        self._study_date = None if value is None else parse_date(value, "study_date")

    @property
    def study_time(self) -> dt.time | None:
        """Time the study started."""
        return self._study_time

    @study_time.setter
    def study_time(self, value: dt.time | str | None) -> None:
        self._study_time = None if value is None else parse_time(value, "study_time")

    @property
    def study_instance_uid(self) -> str | None:
        """The study's UID: digits and dots, at most 64 characters."""
        return self._study_instance_uid

    @study_instance_uid.setter
    def study_instance_uid(self, value: str | None) -> None:
        text = _optional_text(value, "study_instance_uid")
        if text is not None and (len(text) > 64 or not _UID.fullmatch(text)):
            raise RecordValueError("study_instance_uid", "digits and dots, at most 64 characters", value)
        self._study_instance_uid = text

    @property
    def series_number(self) -> int | None:
        """Number of the series within the study."""
        return self._series_number

    @series_number.setter
    def series_number(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RecordValueError("series_number", "a whole number", value)
        self._series_number = int(value) if value is not None else None

    @property
    def number_of_frames(self) -> int:
        """Frames in the image (DICOM NumberOfFrames; 1 when the file does not say)."""
        return self._number_of_frames

    @number_of_frames.setter
    def number_of_frames(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RecordValueError("number_of_frames", "a whole number >= 1", value)
        self._number_of_frames = int(value)

    def _fields(self) -> tuple[str, ...]:
        return self._PATIENT_FIELDS + self._STUDY_FIELDS

    def __str__(self) -> str:
        fields = self.to_dict()
        return super().__str__() + "\n" + _render("Study", {key: fields[key] for key in self._STUDY_FIELDS})

    @classmethod
    def from_dicom(cls, path: str | os.PathLike[str]) -> StudyRecord:
        """Every patient and study field the file holds; pixel data is never loaded."""
        from common.dicom.tags import read_dataset, text_value

        dataset = read_dataset(path)
        record = cls()
        for field, (keyword, convert) in _DICOM_FIELDS.items():
            raw = text_value(dataset, keyword)
            if raw is None:
                continue
            try:
                setattr(record, field, convert(raw))
            except RecordValueError as e:
                log.warning("dicom_value_ignored", keyword=keyword, rule=f"{e.field} must be {e.rule}")
        return record


def _whole(text: str) -> int:
    """A DICOM IS value as an int (`18`, ` 18 `, `18.0`)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise RecordValueError("value", "a whole number", text)
    return int(value)


def _kilograms(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RecordValueError("weight", "a number of kilograms > 0", text) from None


_DICOM_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "name": ("PatientName", str),
    "age": ("PatientAge", parse_age_string),
    "birth_date": ("PatientBirthDate", str),
    "sex": ("PatientSex", str),
    "weight": ("PatientWeight", _kilograms),
    "patient_id": ("PatientID", str),
    "patient_id_type": ("TypeOfPatientID", str),
    "modality": ("Modality", str),
    "study_date": ("StudyDate", str),
    "study_time": ("StudyTime", str),
    "study_instance_uid": ("StudyInstanceUID", str),
    "series_number": ("SeriesNumber", _whole),
    "number_of_frames": ("NumberOfFrames", _whole),
}


def _plain(value: object) -> object:
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def _render(title: str, fields: dict[str, Any]) -> str:
    width = max(len(key) for key in fields)
    lines = [f"{title}:"]
    lines += [f"  {key.replace('_', ' '):<{width}}  {'-' if value is None else value}" for key, value in fields.items()]
    return "\n".join(lines)
