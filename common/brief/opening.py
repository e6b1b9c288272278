"""One wording for a path the exercises cannot open: missing, the wrong kind of thing, or not readable.

The folder listing, the CSV statistics and the JSON processor all open a path a person typed; each
turns the operating system's refusal into its own error class with the same sentence shapes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def explain_open_errors(
    path: str | os.PathLike[str],
    noun: str,
    error: type[Exception],
    *,
    missing: type[Exception] | None = None,
    wrong_kind: type[Exception] | None = None,
) -> Iterator[None]:
    """Re-raise the OS errors of opening `path` (a `noun`, e.g. "CSV file") as `error`, or the narrower
    `missing` / `wrong_kind` classes, with a message that names the path."""
    shown = repr(os.fspath(path))
    try:
        yield
    except FileNotFoundError as e:
        raise (missing or error)(f"{noun} {shown} does not exist") from e
    except IsADirectoryError as e:
        raise (wrong_kind or error)(f"{shown} is a folder, not a {noun}") from e
    except NotADirectoryError as e:
        raise (wrong_kind or error)(f"{shown} is not a {noun}") from e
    except PermissionError as e:
        raise error(f"{noun} {shown} cannot be read: permission denied") from e
