"""Fixtures of the fleet scenario: the server and the clients as docker containers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

SCENARIO_DIR = Path(__file__).resolve().parent.parent


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


def task_output(output: str, name: str) -> str:
    """What ansible-playbook printed under every task whose name ends with ``name`` (an included task runs once per
    include)."""
    blocks = output.split("\nTASK [")[1:]
    return "\n".join(block for block in blocks if block.split("]", 1)[0].endswith(name))


def playbook(name: str, limit: str, extra: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """``ansible-playbook`` of one of the scenario's playbooks on the molecule inventory, with extra variables, in
    check mode (``--check --diff``) when ``check``."""
    argv = ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", limit]
    if check:
        argv += ["--check", "--diff"]
    if extra is not None:
        argv += ["-e", json.dumps(extra)]
    return subprocess.run(argv + [str(SCENARIO_DIR / name)], capture_output=True, text=True, timeout=1800,
                          check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
