"""Fixtures of the fleet scenario: the server and the clients as docker containers."""

from __future__ import annotations

import subprocess


class Box:
    """A test container, reached with ``docker exec``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, command: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-i", self.name, "bash", "-o", "pipefail", "-c", command],
                              input=b"", capture_output=True, timeout=timeout, check=False)

    def ok(self, command: str) -> str:
        result = self.run(command)
        assert result.returncode == 0, (self.name, command, result.stdout[-2000:], result.stderr[-2000:])
        return result.stdout.decode()

    def journal(self, unit: str) -> str:
        return self.run(f"journalctl --no-pager -o cat -n 60 -u {unit}").stdout.decode()
