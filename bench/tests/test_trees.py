"""The pipeline benchmark's "before" tree: set up with the steps its Makefile lists, checked out, then removed."""

from __future__ import annotations

from pathlib import Path

from bench.trees import git, missing_requirements, setup_modules, worktree
from single_host.processes import ROOT

OLD_MAKEFILE = """\
setup: preflight ## Secrets, database, migrations, broker topology, first admin.
\t$(PY) -m common.secret_settings
\t$(PY) -m results_service.migrate
\t$(PY) -m common.broker
\t$(PY) -m results_service.bootstrap_admin

up: setup ## Set up, then run every service.
\t$(PY) -m common.supervisor
"""


def test_setup_steps_are_the_modules_of_the_setup_target_in_order() -> None:
    assert setup_modules(OLD_MAKEFILE) == [
        "common.secret_settings",
        "results_service.migrate",
        "common.broker",
        "results_service.bootstrap_admin",
    ]


def test_this_checkouts_setup_steps_migrate_the_database() -> None:
    assert "results_service.migrate" in setup_modules((ROOT / "Makefile").read_text())


def test_a_worktree_holds_the_commit_and_is_gone_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "tree"

    with worktree("HEAD", path) as tree:
        assert git("rev-parse", "HEAD", cwd=tree) == git("rev-parse", "HEAD")
        assert (tree / "Makefile").is_file()

    assert not path.exists()
    assert str(path) not in git("worktree", "list")


def test_a_pin_of_a_package_this_venv_lacks_is_reported_and_installed_ones_are_not() -> None:
    lock = "# pinned\naiohttp==0.0.1\nno-such-package-dicomflow==1.0 ; python_version >= '3.11'\n"

    assert missing_requirements(lock) == ["no-such-package-dicomflow==1.0"]
