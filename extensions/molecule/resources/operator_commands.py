"""The restore script's operator commands on real hosts, shared by the restic and borg scenarios: dump, exec,
snapshots --json (both on Debian 12 and 13).

Each scenario's tests/test_operator_commands.py imports these tests; its conftest defines the fixture ``tool``
(see provider_conftest.py) and runs them beside the drills, after the scenario's own tests. They back up instance
"local" (request A's app.txt) and leave it working.
"""

from __future__ import annotations

import base64
import json
import re
import shlex

from drills import Tool, backup_new, backup_ok, snapshots

__all__ = [
    "test_dump_writes_the_dump_of_latest_and_of_an_older_snapshot_byte_for_byte",
    "test_dump_refuses_to_write_to_a_terminal",
    "test_exec_runs_the_tool_with_the_instance_s_repository_as_the_request_s_user",
    "test_snapshots_json_lists_the_instance_s_snapshots",
]

# Two versions of request A's data that no text tool would keep intact: NUL bytes, bytes that are no UTF-8, no
# newline at the end.
FIRST = b"first\x00dump\xff\xfe\r\n\x00"
SECOND = b"second \x00\x01\x02 dump with 100% $HOME `id` 'quotes' \"both\" \\ \xc3\xa4\xc3\xb6\xc3\xbc"


def script(tool: Tool) -> str:
    return f"{tool.provider}-restore-local"


def write_bytes(host, tool: Tool, content: bytes) -> None:
    path = f"{tool.data_dir}/app.txt"
    host.check_output(f"echo {base64.b64encode(content).decode()} | base64 -d > {path} && chown dbuser {path}")


def dump(host, tool: Tool, which: str) -> bytes:
    """``dump <which>`` into a root-only file, read back exactly (check_output would strip and decode)."""
    out = f"/root/dump-{tool.provider}.out"
    result = host.run(f"{script(tool)} dump {shlex.quote(which)} > {out}")
    assert result.rc == 0, result.stderr
    data = base64.b64decode(host.check_output(f"base64 -w0 {out}"))
    host.check_output(f"rm -f {out}")
    return data


def test_dump_writes_the_dump_of_latest_and_of_an_older_snapshot_byte_for_byte(host, tool):
    """Two backups of different binary contents: dump latest gives the second exactly, dump <older id> the first,
    each what backup_cmd read from the "database" (app.txt) at its backup."""
    # A backup first: borg creates the repository at an instance's first backup, and these tests may run alone.
    backup_ok(host, tool, "local")
    write_bytes(host, tool, FIRST)
    older = backup_new(host, tool, "local")
    write_bytes(host, tool, SECOND)
    backup_new(host, tool, "local")
    assert dump(host, tool, "latest") == SECOND
    assert dump(host, tool, older) == FIRST
    # A snapshot that is not this instance's is refused and nothing is written.
    other, message = (("0123abcd", "no snapshot '0123abcd' of instance local") if tool.provider == "restic" else
                      ("local@elsewhere-2026-01-01T00:00:00.000000", "not a valid archive"))
    refused = host.run(f"{script(tool)} dump {other} > /dev/null")
    assert refused.rc == 1 and message in refused.stderr, refused.stderr


def test_dump_refuses_to_write_to_a_terminal(host, tool):
    """On a terminal (script(1) gives the dump one) the dump is refused with a message and a non-zero exit."""
    result = host.run(f"script -qec {shlex.quote(f'{script(tool)} dump latest')} /dev/null")
    assert result.rc == 1, result.stdout + result.stderr
    assert "refusing to write the dump to a terminal" in result.stdout
    assert "second" not in result.stdout


def test_exec_runs_the_tool_with_the_instance_s_repository_as_the_request_s_user(host, tool):
    """exec -- <arguments> reaches the instance's repository with its secrets (none on a command line) and runs as
    the request's user."""
    listed = snapshots(host, tool, "local")
    if tool.provider == "restic":
        result = host.run(f"{script(tool)} exec -- snapshots --tag selfhost-backup:local")
        assert result.rc == 0, result.stderr
        assert listed[-1] in result.stdout
        # As the request's user: the cache restic fills is the user's (a cache directory made for the test).
        cache = host.check_output("mktemp -d /var/cache/operator-exec.XXXXXX")
        host.check_output(f"chown dbuser {cache}")
        result = host.run(f"CACHE_DIRECTORY={cache} {script(tool)} exec -- cat config")
        assert result.rc == 0, result.stderr
        owners = host.check_output(f"find {cache} -mindepth 1 -printf '%u\\n' | sort -u")
        host.check_output(f"rm -rf {cache}")
        assert owners == "dbuser", owners
    else:
        result = host.run(f"{script(tool)} exec -- list")
        assert result.rc == 0, result.stderr
        assert listed[-1] in result.stdout
        # borg with-lock runs a command for the repository: it shows who borg runs as.
        result = host.run(f"{script(tool)} exec -- with-lock /srv/borg/local id -un")
        assert result.rc == 0 and result.stdout.strip() == "dbuser", result.stdout + result.stderr
    # The tool's exit status is passed on: an unknown command of the tool fails.
    failed = host.run(f"{script(tool)} exec -- no-such-command")
    assert failed.rc != 0
    # A usage error of exec itself names what is wrong.
    misused = host.run(f"{script(tool)} exec snapshots")
    assert misused.rc == 2 and "expected '--' before the" in misused.stderr, misused.stderr


def test_snapshots_json_lists_the_instance_s_snapshots(host, tool):
    """snapshots --json is one JSON list: the ids restore and dump take (those of plain snapshots), the time with its
    UTC offset, this host's name, the size where the tool tells it."""
    listed = snapshots(host, tool, "local")
    result = host.run(f"{script(tool)} snapshots --json")
    assert result.rc == 0, result.stderr
    entries = json.loads(result.stdout)
    assert isinstance(entries, list) and len(entries) == len(listed), result.stdout
    # restic records the job's host (the inventory hostname), borg the host's own name.
    expected_host = host.backend.get_hostname() if tool.provider == "restic" else host.check_output("hostname")
    for entry, plain in zip(entries, listed):
        assert set(entry) == {"id", "time", "host", "size"}, entry
        assert entry["id"].startswith(plain), (entry, plain)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)", entry["time"]), entry
        assert entry["host"] == expected_host, entry
        assert entry["size"] is None or (isinstance(entry["size"], int) and entry["size"] > 0), entry
    # The newest is the dump of SECOND, where the tool tells a size.
    assert entries[-1]["size"] in (None, len(SECOND)), entries[-1]
