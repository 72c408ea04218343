"""Fixtures of the generic contract test: the scenario's variables and the hosts as docker containers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
VARS = yaml.safe_load((SCENARIO_DIR / "vars.yml").read_text())


class Box:
    """A test container, reached with ``docker exec`` (stdin for the large SQL the tests feed in)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, command: str, stdin: bytes | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-i", self.name, "bash", "-o", "pipefail", "-c", command],
                              input=stdin or b"", capture_output=True, timeout=timeout, check=False)

    def ok(self, command: str, stdin: bytes | None = None) -> str:
        result = self.run(command, stdin)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        return result.stdout.decode()

    def journal(self, unit: str) -> str:
        return self.run(f"journalctl --no-pager -o cat -n 40 -u {unit}").stdout.decode()


@pytest.fixture(scope="session")
def scenario() -> dict:
    return VARS
