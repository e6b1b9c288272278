"""The rules of e-mail addresses and passwords, worded for the person who typed them.

An account's e-mail is checked with `email-validator` (the maintained validator pydantic's `EmailStr` uses, run
here without DNS look-ups: accounts are identifiers, the system sends no mail) and stored in one normal form,
lower-cased as every account has always been, so that login finds it whatever case or Unicode form is typed.
Login itself only normalises: an address that would not pass today's check may still belong to an older account.

A password's rules are checked by our own validator rather than pydantic's `min_length`, whose message ("Value
should have at least 12 items after validation") tells nobody what to do; the JSON schema still states the bounds.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, SecretStr

from common.schemas.text import PRINTABLE

EMAIL_MAX = 320
"""The column's width; email-validator's own limit (254, RFC 5321's path) is tighter and says so in words."""
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
PASSWORD_CHANGE_REQUIRED = "You must change your password before continuing."  # noqa: S105 (a message)
"""What every call but `POST /api/auth/password` answers (403) while an account must change its password."""
_NOT_IN_ADDRESSES = "<>"


def normalise_email(value: str) -> str:
    """The form accounts are stored and looked up in: trimmed, NFC, and (as always) lower-cased."""
    return unicodedata.normalize("NFC", value.strip()).lower()


def valid_email(value: str) -> str:
    """`value` as a valid e-mail address in its normal form, or a ValueError saying what is wrong with it."""
    text = value.strip()
    if len(text) > EMAIL_MAX:
        raise ValueError(f"This email address is too long: it has {len(text)} characters, at most 254 are allowed.")
    bad = [char for char in _NOT_IN_ADDRESSES if char in text]
    if bad:
        raise ValueError(f"This is not a valid email address. It must not contain {' or '.join(map(repr, bad))}.")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"This is not a valid email address. {exc}") from None
    return normalise_email(result.normalized)


def login_email(value: str) -> str:
    """The address a login looks up: the normal form of a valid address, else the text merely normalised."""
    try:
        return valid_email(value)
    except ValueError:
        return normalise_email(value)


def _password_rules(value: SecretStr) -> SecretStr:
    length = len(value.get_secret_value())
    if length < PASSWORD_MIN:
        raise ValueError(f"The password must have at least {PASSWORD_MIN} characters (this one has {length}).")
    if length > PASSWORD_MAX:
        raise ValueError(f"The password must have at most {PASSWORD_MAX} characters.")
    return value


Email = Annotated[
    str,
    AfterValidator(valid_email),
    Field(json_schema_extra={"format": "email", "maxLength": EMAIL_MAX}, description="An e-mail address."),
]
"""An account's e-mail address, validated and normalised."""

LoginEmail = Annotated[str, Field(min_length=1, max_length=EMAIL_MAX), PRINTABLE, AfterValidator(login_email)]
"""The e-mail typed at login: no control characters (a NUL is a 422, not a database error), normalised."""

NewPassword = Annotated[
    SecretStr,
    AfterValidator(_password_rules),
    Field(
        json_schema_extra={"minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
        description=f"At least {PASSWORD_MIN} and at most {PASSWORD_MAX} characters.",
    ),
]
"""A password being set: its rules are checked, with messages in words."""
