"""The conftest.py of the provider scenarios (restic, borg): their fixtures and the order their tests run in.

Each scenario's tests/conftest.py puts this directory on sys.path, imports the hook below and builds its fixtures:

    from provider_conftest import provider_fixtures, pytest_collection_modifyitems
    tool, scenario = provider_fixtures(RESTIC)
"""

from __future__ import annotations

import pytest
import yaml

# Plain asserts in the shared modules explain themselves too (they are not test modules): registered before any of
# them is imported.
pytest.register_assert_rewrite("provider_checks", "drills", "failure_paths", "job_checks", "repository_guards",
                               "operator_commands", "restore_drills")

from drills import SCENARIOS, Tool  # noqa: E402 pylint: disable=wrong-import-position


def provider_fixtures(tool: Tool) -> tuple:
    """The fixtures ``tool`` (the scenario's provider, which the shared tests take) and ``scenario`` (the
    scenario's variables, as converge.yml saw them)."""

    @pytest.fixture(scope="session", name="tool")
    def tool_fixture() -> Tool:
        return tool

    @pytest.fixture(scope="session", name="scenario")
    def scenario_fixture() -> dict:
        return yaml.safe_load((SCENARIOS / tool.provider / "vars.yml").read_text())

    return tool_fixture, scenario_fixture


def pytest_collection_modifyitems(items: list) -> None:
    """The scenario's own tests first (they expect fresh repositories), then the failure drills and paths and the
    operator commands and the restore drills (test_drills.py, test_failure_paths.py, test_operator_commands.py,
    test_restore_drills.py), the converges that must change nothing (test_repository_guards.py),
    then the test that removes instances, and last the one that removes them all."""
    items.sort(key=lambda item: 4 if item.name.startswith("test_finally")
               else 3 if item.name.startswith("test_disabled_and_vanished")
               else 2 if item.fspath.basename == "test_repository_guards.py"
               else 1 if item.fspath.basename in ("test_drills.py", "test_failure_paths.py", "test_operator_commands.py",
                                                  "test_restore_drills.py")
               else 0)
