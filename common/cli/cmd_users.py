"""`dicomflow users create|list|disable|enable|reset-password`: operators manage accounts.

The CLI talks to results_service's internal account API (`RESULTS_URL`, `/internal/users`)
over HTTP, like every other client: `common` never imports a service, password hashing and
the audit record stay in results_service, and the CLI needs no database credentials. It proves
that it runs inside the deployment with a service token signed with SERVICE_SECRET (from the
environment or `var/secrets/service_secret`): without one, results_service answers 401. The
internal API should still be reachable only from the deployment's own network; the gateway
does not proxy it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Any

from common.app.logs import get_logger
from common.cli.support import add_json_flag, print_json, print_table

log = get_logger("dicomflow.cli")

DEFAULT_RESULTS_URL = "http://127.0.0.1:8081"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `users` with its subcommands."""
    users = subparsers.add_parser("users", help="create, list, disable, enable user accounts or reset a password")
    users.add_argument(
        "--results-url",
        default=os.environ.get("RESULTS_URL", DEFAULT_RESULTS_URL),
        help="base URL of results_service (default: $RESULTS_URL or %(default)s)",
    )
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(users))

    create = actions.add_parser("create", help="create an account (the password is asked, or read from stdin)")
    create.add_argument("email", metavar="EMAIL")
    create.add_argument("--role", choices=("user", "admin"), default="user")
    create.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add_json_flag(create)
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", help="list every account")
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)

    for name, disabled in (("disable", True), ("enable", False)):
        action = actions.add_parser(name, help=f"{name} an account (by email)")
        action.add_argument("email", metavar="EMAIL")
        add_json_flag(action)
        action.set_defaults(handler=run_set_disabled, disabled=disabled)

    reset = actions.add_parser(
        "reset-password",
        help="give an account a temporary password (generated and printed once, or read from stdin); "
        "the user must change it at their next login",
    )
    reset.add_argument("email", metavar="EMAIL")
    reset.add_argument(
        "--password-stdin", action="store_true", help="read the temporary password from stdin instead of generating one"
    )
    add_json_flag(reset)
    reset.set_defaults(handler=run_reset_password)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise ValueError("the two passwords differ")
    else:
        raise ValueError("stdin is not a terminal: pass --password-stdin and the password on stdin")
    if not password:
        raise ValueError("the password is empty")
    return password


def _service_headers() -> dict[str, str]:
    """The service token of an operator's tool (no user: results_service records the actor `operator`)."""
    from pydantic import ValidationError

    from common.app.secret_settings import ServiceTokenSettings
    from common.auth.service_tokens import ServiceSigner

    try:
        settings = ServiceTokenSettings()
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    return ServiceSigner(settings.service_secret.get_secret_value(), "dicomflow-cli").headers("results_service")


async def _call(base_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the internal API; a problem answer becomes a ValueError with its detail."""
    import aiohttp  # imported when used, so the other commands start fast

    url = base_url.rstrip("/") + path
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, url, json=body, headers=_service_headers()) as response,
        ):
            payload = await response.json(content_type=None) if response.content_length != 0 else None
            if response.status >= 400:
                detail = payload.get("detail") if isinstance(payload, dict) else None
                errors = payload.get("errors") if isinstance(payload, dict) else None
                fields = "; ".join(f"{e['field']}: {e['message']}" for e in errors or [])
                raise ValueError(f"{detail or response.reason}{' (' + fields + ')' if fields else ''}")
            return payload
    except aiohttp.ClientConnectionError as exc:
        raise OSError(f"cannot reach results_service at {base_url}: {exc}") from exc


def _print_users(users: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(users if len(users) != 1 else users[0])
        return
    rows = [
        (u["email"], u["role"], _yes(u["disabled"]), u["id"], u["created_at"], _yes(u.get("must_change_password")))
        for u in users
    ]
    print_table(("email", "role", "disabled", "id", "created", "must-change-password"), rows)


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


async def _user_id(base_url: str, email: str) -> str:
    """The id of the account with this email (in the normal form accounts are stored in), or a ValueError."""
    from common.schemas.credentials import login_email

    listing = await _call(base_url, "GET", "/internal/users")
    wanted = login_email(email)
    match = next((u for u in listing["items"] if u["email"] == wanted), None)
    if match is None:
        raise ValueError(f"no account with email {email!r}")
    return str(match["id"])


def run_create(args: argparse.Namespace) -> int:
    """Create the account; print it (never the password)."""
    password = _read_password(args.password_stdin)
    body = {"email": args.email, "password": password, "role": args.role}
    user = asyncio.run(_call(args.results_url, "POST", "/internal/users", body))
    log.info("user_created", user_id=user["id"], role=user["role"])
    _print_users([user], args.json)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print every account, oldest first."""
    listing = asyncio.run(_call(args.results_url, "GET", "/internal/users"))
    users = listing["items"]
    if args.json:
        print_json(users)
    else:
        _print_users(users, False)
    return 0


def run_set_disabled(args: argparse.Namespace) -> int:
    """Disable (or enable) the account with this email; its tokens stop working at once."""

    async def apply() -> dict[str, Any]:
        user_id = await _user_id(args.results_url, args.email)
        user: dict[str, Any] = await _call(
            args.results_url, "PATCH", f"/internal/users/{user_id}", {"disabled": args.disabled}
        )
        return user

    user = asyncio.run(apply())
    log.info("user_disabled" if args.disabled else "user_enabled", user_id=user["id"])
    _print_users([user], args.json)
    return 0


def run_reset_password(args: argparse.Namespace) -> int:
    """Reset the account's password; print the account and, when generated, the temporary password (once).

    Its tokens are revoked; at the next login the user gets a token good only for changing the password."""
    body = {"password": _read_password(True)} if args.password_stdin else {}

    async def apply() -> dict[str, Any]:
        user_id = await _user_id(args.results_url, args.email)
        answer: dict[str, Any] = await _call(
            args.results_url, "POST", f"/internal/users/{user_id}/password-reset", body
        )
        return answer

    answer = asyncio.run(apply())
    log.info("user_password_reset", user_id=answer["user"]["id"], generated=answer["temporary_password"] is not None)
    if args.json:
        print_json(answer)
        return 0
    _print_users([answer["user"]], False)
    if answer["temporary_password"] is not None:
        print(f"temporary password (shown once): {answer['temporary_password']}")
    print("The user must choose a new password at their next login.")
    return 0
