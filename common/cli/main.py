"""Entry point of the `dicomflow` console script: parse, dispatch, and turn errors into exit codes.

Errors never reach the user as a traceback: a known error (bad input, a missing file) is logged
with its reason and exits 1; a usage error exits 2; anything unexpected is logged and exits 70;
Ctrl-C exits 130. A reader that goes away (`dicomflow ... | head`) ends the command quietly with
141, the status a shell reports for a process that SIGPIPE ended (as `cat` or `grep` would be).
Logs go to stderr (console format on a terminal, JSON otherwise, or as
LOG_FORMAT says), so stdout carries only the command's output.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from common.app.logs import configure_logging, get_logger

log = get_logger("dicomflow.cli")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130
EXIT_OUTPUT_CLOSED = 128 + signal.SIGPIPE
COMMAND_MODULE_PREFIX = "cmd_"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors logged like every other error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        log.error("usage_error", command=self.prog, reason=message)
        raise SystemExit(EXIT_USAGE)


def command_modules(command: str | None = None) -> list[ModuleType]:
    """The `common/cli/cmd_*.py` modules, in name order; only `cmd_<command>.py` when it exists.

    Importing one module instead of all keeps a command's start-up free of what the other
    commands import (aio-pika, aiohttp, pydicom ...). Without such a module, or for `--help`,
    every module is imported, so a module registering several commands still works.
    """
    here = str(Path(__file__).resolve().parent)
    names = sorted(info.name for info in pkgutil.iter_modules([here]) if info.name.startswith(COMMAND_MODULE_PREFIX))
    own = module_name_for(command) if command else None
    return [importlib.import_module(f"{__package__}.{name}") for name in ([own] if own in names else names)]


def module_name_for(command: str) -> str:
    """`process-json` -> `cmd_process_json`: where a command is looked for first."""
    return COMMAND_MODULE_PREFIX + command.replace("-", "_")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with the subcommands of `command_modules(command)`."""
    parser = _Parser(prog="dicomflow", description="The exercises of the dicomflow brief, from a command line.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for module in command_modules(command):
        module.register(subparsers)
    return parser


def configure_cli_logging() -> None:
    """Structlog to stderr: console on a terminal, JSON otherwise; LOG_FORMAT and LOG_LEVEL override."""
    fmt = os.environ.get("LOG_FORMAT", "").strip().lower() or ("console" if sys.stderr.isatty() else "json")
    level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
    configure_logging(
        "dicomflow",
        level=level if level in _LEVELS else "INFO",
        fmt="console" if fmt == "console" else "json",
        stream=sys.stderr,
    )
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # its value warnings are reported by us, in our words
    if fmt not in ("json", "console"):
        log.warning("log_format_unknown", value=fmt, using="json")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process exit code."""
    configure_cli_logging()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(words)
    except BrokenPipeError:  # stdout's reader went away (`| head`): not an error of ours
        return output_closed()


def output_closed() -> int:
    """End quietly after stdout's reader went away: what is still buffered goes to /dev/null (so the flush at
    exit cannot fail again and print Python's own complaint), and the status is SIGPIPE's."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    log.debug("output_closed")
    return EXIT_OUTPUT_CLOSED


def _run(words: list[str]) -> int:
    """Parse and run one command; every error but a closed stdout becomes its exit code here."""
    parser = build_parser(words[0] if words and not words[0].startswith("-") else None)
    try:
        args = parser.parse_args(words)
    except SystemExit as e:  # --help, or a usage error already logged
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        code: int = args.handler(args)
        sys.stdout.flush()
    except SystemExit as e:  # a usage error found by the command itself, already logged
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        log.warning("interrupted", command=args.command)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # not an OSError of the command's: main ends the process quietly
        raise
    except (ValueError, OSError) as e:  # every domain error of the exercises is a ValueError with a reason
        log.error("command_failed", command=args.command, error=type(e).__name__, reason=str(e))
        return EXIT_ERROR
    except Exception as e:  # the CLI's edge: a reason, never a traceback
        log.error("command_crashed", command=args.command, error=type(e).__name__, reason=str(e))
        return EXIT_SOFTWARE
    return code


if __name__ == "__main__":
    sys.exit(main())
