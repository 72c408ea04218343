"""Failure drills the restic and borg scenarios share (both on Debian 12 and 13).

Each scenario's tests/test_drills.py imports these tests; its conftest defines the fixture ``tool`` (RESTIC or BORG
below, see provider_conftest.py) and runs them after the scenario's own tests and before the one that removes
instances. They leave every instance working. The scenarios' request A (vars.yml) reads app.txt and honours flag
files in its data directory: ``slow`` sleeps before the dump, ``slow-tail`` sleeps after the dump has been
streamed, ``fail-backup`` fails it.

The helpers below (write, read, backup, snapshots, restore, ...) serve every shared test of the provider scenarios.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from provider_checks import assert_failure_reported, notified_path, server_host

__all__ = [
    "test_kill_9_mid_stream_then_the_next_run_and_the_check_succeed",
    "test_a_manual_start_during_a_run_joins_it",
    "test_status_shows_a_running_backup_as_running",
    "test_a_second_instance_never_breaks_a_live_lock",
    "test_an_unreachable_repository_fails_reported_and_recovers",
    "test_no_secret_in_ansible_output_at_vvv",
]

SCENARIOS = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Tool:
    provider: str  # restic or borg
    data_dir: str  # where request A's app.txt and flag files live
    process: str  # pgrep -f pattern of the tool's backup process
    snapshot_line: str  # regex whose group 1 is one snapshot id in `<restore script> snapshots`
    server_var: str  # scenario variable with the server container's name
    unreachable_result: str  # regex of systemd's result of a backup whose remote repository is gone
    locks: str  # command (as root) listing the locks of local repository {repo}, read with instance {instance}'s secret
    exclusive_backups: bool  # whether a backup locks the repository exclusively (borg) or shares it (restic)
    unfinished_mark: str  # a file that makes instance {instance}'s next backup clear stale locks first ("" for none)
    secrets: tuple  # the scenario variables holding secrets (an ugly secret by its token, which no escaping changes)

    def unit(self, instance: str) -> str:
        return f"{self.provider}-backup-{instance}.service"

    @property
    def converge(self) -> Path:
        return SCENARIOS / self.provider / "converge.yml"


RESTIC = Tool(
    provider="restic",
    data_dir="/var/lib/restic-test",
    process="restic .*backup ",
    snapshot_line=r"^([0-9a-f]{8})\s",
    server_var="restic_test_server",
    # The REST server's container is gone: restic 0.14 fails at once on the unresolvable name, restic 0.18 retries
    # for up to 15 minutes and limits.timeout ends it first.
    unreachable_result="exit-code|timeout",
    locks=("RESTIC_PASSWORD_FILE=/etc/selfhost-backup/restic/{instance}/passphrase "
           "restic --no-cache -r /srv/restic/{repo} list locks --no-lock"),
    exclusive_backups=False,
    # What a failed or killed run leaves in the units' cache: the next run starts with restic unlock.
    unfinished_mark="/var/cache/restic-backup-{instance}/restic-unfinished.backup",
    secrets=("restic_test_passphrase", "restic_test_rest_password", "ping_monitor_secret", "restic_test_ugly_token",
             "restic_test_s3_secret"),
)

BORG = Tool(
    provider="borg",
    data_dir="/var/lib/borg-test",
    process="borg .*create ",
    # <instance>@<inventory hostname>-<UTC time>: the restore script lists this host's archives of its instance.
    snapshot_line=r"^(\S+-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})\s",
    server_var="borg_test_server",
    # ssh cannot reach the stopped server: borg fails at once.
    unreachable_result="exit-code",
    # borg's repository lock: a directory with one file per holder (host, PID, thread).
    locks="ls -A /srv/borg/{repo}/lock.exclusive 2>/dev/null || true",
    exclusive_backups=True,
    unfinished_mark="",
    secrets=("borg_test_passphrase", "ping_monitor_secret", "borg_test_ugly_token"),
)


def write(host, tool: Tool, content: str, name: str = "app.txt") -> None:
    """Write a file of the requests' data directory (request A dumps app.txt, request B other.txt), owned by their user."""
    path = f"{tool.data_dir}/{name}"
    host.check_output(f"printf %s {shlex.quote(content)} > {path} && chown dbuser {path}")


def read(host, tool: Tool, name: str = "app.txt") -> str:
    """The exact content (check_output would strip a trailing newline)."""
    return base64.b64decode(host.check_output(f"base64 -w0 {tool.data_dir}/{name}")).decode()


def snapshots(host, tool: Tool, instance: str) -> list:
    """The instance's snapshot ids (restic) or archive names (borg), oldest first."""
    out = host.check_output(f"{tool.provider}-restore-{instance} snapshots")
    return re.findall(tool.snapshot_line, out, re.M)


def backup(host, tool: Tool, instance: str):
    """Start the instance's backup service and wait for its end; the result, whatever it is."""
    return host.run(f"systemctl start --wait {tool.unit(instance)}")


def backup_ok(host, tool: Tool, instance: str) -> None:
    result = backup(host, tool, instance)
    assert result.rc == 0, host.run(f"journalctl --no-pager -n 40 -u {tool.unit(instance)}").stdout


def backup_new(host, tool: Tool, instance: str) -> str:
    """Back up and return the one new snapshot's id (restic) or archive name (borg)."""
    before = set(snapshots(host, tool, instance))
    backup_ok(host, tool, instance)
    new = [snapshot for snapshot in snapshots(host, tool, instance) if snapshot not in before]
    assert len(new) == 1, new
    return new[0]


def restore(host, tool: Tool, instance: str, which: str):
    """``<provider>-restore-<instance> restore <which>``; the result, whatever it is."""
    return host.run(f"{tool.provider}-restore-{instance} restore {shlex.quote(which)}")


def check_ok(host, tool: Tool, instance: str) -> None:
    """The instance's repository check job passes."""
    unit = f"{tool.provider}-backup-{instance}-check.service"
    result = host.run(f"systemctl start --wait {unit}")
    assert result.rc == 0, host.run(f"journalctl --no-pager -n 40 -u {unit}").stdout


def restore_ok(host, tool: Tool, instance: str, which: str) -> None:
    result = restore(host, tool, instance, which)
    assert result.rc == 0, result.stderr


def flags(host, tool: Tool, *names: str) -> None:
    """Set exactly these flag files of request A."""
    host.check_output(f"cd {tool.data_dir} && rm -f slow slow-tail fail-backup cut-dump && "
                      f"touch -- {' '.join(names) or '/dev/null'}")


def wait_for(host, condition: str, seconds: int = 60) -> None:
    result = host.run(f"timeout {seconds} sh -c {shlex.quote(f'until {condition}; do sleep 0.2; done')}")
    assert result.rc == 0, f"timed out waiting for: {condition}"


def streaming_and_locked(tool: Tool, instance: str, repo: str) -> str:
    """Condition: request A's dump has been streamed (its slow-tail sleep runs) and the tool holds its lock."""
    return f"pgrep -u dbuser -f 'sleep 8' >/dev/null && [ -n \"$({tool.locks.format(instance=instance, repo=repo)})\" ]"


def wait_until_inactive(host, unit: str) -> None:
    """Until the run and its ExecStopPost= hooks are over (deactivating is the hooks' time)."""
    wait_for(host, f'! systemctl show -P ActiveState {unit} | grep -qx -e activating -e deactivating', 120)


def journal_since(host, unit: str, since: str) -> str:
    return host.check_output(f"journalctl --no-pager -o cat --since {shlex.quote(since)} -u {unit}")


def now(host) -> str:
    return host.check_output("date '+%Y-%m-%d %H:%M:%S'")


def test_kill_9_mid_stream_then_the_next_run_and_the_check_succeed(host, tool):
    """The tool is killed while the dump streams: the run fails and is reported; the next run succeeds despite
    the lock the killed tool left, the repository check passes and the older snapshot is intact."""
    write(host, tool, "before the kill\n")
    backup_ok(host, tool, "local")
    older = snapshots(host, tool, "local")
    write(host, tool, "killed mid-stream\n")
    since = now(host)
    host.check_output(f"rm -f {notified_path(tool.provider, 'local')}")
    flags(host, tool, "slow-tail")
    try:
        host.check_output(f"systemctl start --no-block {tool.unit('local')}")
        # The dump has been streamed, the tool holds the repository's lock and waits for the dump's end: kill it.
        wait_for(host, streaming_and_locked(tool, "local", "local"))
        host.check_output(f"pkill -KILL -u dbuser -f {shlex.quote(tool.process)}")
        wait_until_inactive(host, tool.unit("local"))
    finally:
        flags(host, tool)
    state = host.run(f"systemctl is-failed {tool.unit('local')}").stdout.strip()
    assert state == "failed", (state, journal_since(host, tool.unit("local"), since))
    # The killed tool could not remove its lock: the drill is real.
    assert host.check_output(tool.locks.format(instance="local", repo="local")) != "", \
        journal_since(host, tool.unit("local"), since)
    assert_failure_reported(host, tool.provider, "local")
    assert snapshots(host, tool, "local") == older, (older, snapshots(host, tool, "local"))
    mark = tool.unfinished_mark.format(instance="local")
    # restic: the failed run left the mark that makes the next one clear the stale lock.
    assert not mark or host.file(mark).exists
    write(host, tool, "after the kill\n")
    backup_ok(host, tool, "local")
    assert not mark or not host.file(mark).exists
    after = snapshots(host, tool, "local")
    assert older[-1] in after and len(set(after) - set(older)) == 1, (older, after)
    check_ok(host, tool, "local")
    restore_ok(host, tool, "local", older[-1])
    assert read(host, tool) == "before the kill\n"
    restore_ok(host, tool, "local", "latest")
    assert read(host, tool) == "after the kill\n"


def test_a_manual_start_during_a_run_joins_it(host, tool):
    """A manual start while the timer's run is active waits for that run instead of starting a second one."""
    before = snapshots(host, tool, "local")
    since = now(host)
    flags(host, tool, "slow")
    try:
        # What the timer does: start the service without waiting.
        host.check_output(f"systemctl start --no-block {tool.unit('local')}")
        wait_for(host, f'[ "$(systemctl show -P ActiveState {tool.unit("local")})" = activating ]')
        manual = host.run(f"systemctl start --wait {tool.unit('local')}")
    finally:
        flags(host, tool)
    assert manual.rc == 0, manual.stderr
    new = [snapshot for snapshot in snapshots(host, tool, "local") if snapshot not in before]
    assert len(new) == 1, new
    started = re.findall(r"^Start(ing|ed) ", journal_since(host, tool.unit("local"), since), re.M)
    assert started.count("ing") == 1, started
    # And the repository is sound.
    check_ok(host, tool, "local")


def test_status_shows_a_running_backup_as_running(host, tool):
    """While a backup runs, selfhost-backup status shows it running (not a problem), and OK once it is done."""
    # Only this instance (its manifest, with its time), so that status reads the run at once.
    state = host.check_output("mktemp -d")
    host.check_output(f"cp -p /var/lib/selfhost-backup/{tool.provider}-backup-local.json {state}/")
    status = f"SELFHOST_BACKUP_STATE_DIR={state} selfhost-backup status"
    flags(host, tool, "slow-tail")
    try:
        host.check_output(f"systemctl start --no-block {tool.unit('local')}")
        wait_for(host, f'[ "$(systemctl show -P ActiveState {tool.unit("local")})" = activating ]')
        running = host.run(status)
        wait_until_inactive(host, tool.unit("local"))
    finally:
        flags(host, tool)
    assert running.rc == 0, running.stdout + running.stderr
    assert re.fullmatch(rf"{tool.provider} +local +last run \S+ \S+ UTC \(running, for \d+s\), .*: RUNNING",
                        running.stdout.strip()), running.stdout
    done = host.run(f"{status} --json")
    entry = json.loads(done.stdout)[0]
    assert done.rc == 0 and entry["running"] is False and entry["result"] == "success", entry
    # Its run timeout is the default limits.timeout: a hung run would be ended and reported.
    assert entry["timeout"] == 43200 and entry["ok"] is True, entry
    host.check_output(f"rm -rf {state}")


def test_a_second_instance_never_breaks_a_live_lock(host, tool):
    """While instance shared_a's backup holds the shared repository, instance shared_b backs up too (restic
    clears stale locks first, borg kills stale ones itself): the live run's lock is respected."""
    since = now(host)
    flags(host, tool, "slow-tail")
    try:
        host.check_output(f"systemctl start --no-block {tool.unit('shared_a')}")
        wait_for(host, streaming_and_locked(tool, "shared_a", "shared"))
        live_locks = host.check_output(tool.locks.format(instance="shared_a", repo="shared"))
        mark = tool.unfinished_mark.format(instance="shared_b")
        if mark:
            # As after a killed run of shared_b: its backup clears stale locks first, beside the live run.
            host.check_output(f"touch {mark}")
        backup_ok(host, tool, "shared_b")
        if mark:
            assert not host.file(mark).exists, "shared_b's backup did not clear stale locks"
        state_after_b = host.check_output(f"systemctl show -P ActiveState {tool.unit('shared_a')}")
        locks_after_b = host.check_output(tool.locks.format(instance="shared_a", repo="shared"))
        wait_until_inactive(host, tool.unit("shared_a"))
    finally:
        flags(host, tool)
    assert host.check_output(f"systemctl show -P Result {tool.unit('shared_a')}") == "success", \
        journal_since(host, tool.unit("shared_a"), since)
    assert live_locks != ""
    if tool.exclusive_backups:
        # borg: shared_b waited for shared_a's run to end instead of breaking its lock.
        assert state_after_b != "activating"
    else:
        # restic: shared_b ran beside the live run, and the live run's lock was still there after shared_b's unlock.
        assert state_after_b == "activating" and set(live_locks.split()) <= set(locks_after_b.split())


def test_an_unreachable_repository_fails_reported_and_recovers(host, tool, scenario):
    """The remote repository's container is stopped: the backup fails (within its run timeout) and is reported;
    once the container is back, the next run succeeds."""
    server = scenario[tool.server_var]
    backup_ok(host, tool, "remote")  # a good snapshot first: the instance is failed, not late
    host.check_output(f"rm -f {notified_path(tool.provider, 'remote')}")
    stop = subprocess.run(["docker", "stop", "--time", "2", server], capture_output=True, text=True, check=False)
    assert stop.returncode == 0, stop.stderr
    try:
        result = host.run(f"systemctl start --wait {tool.unit('remote')}")
    finally:
        subprocess.run(["docker", "start", server], capture_output=True, check=True)
    assert result.rc != 0
    assert_failure_reported(host, tool.provider, "remote", result=tool.unreachable_result,
                            log_text="backup failed" if tool.unreachable_result == "exit-code" else "")
    assert re.fullmatch(tool.unreachable_result, host.check_output(f"systemctl show -P Result {tool.unit('remote')}"))
    back = server_host(server)
    wait_for(back, "systemctl is-system-running --wait >/dev/null 2>&1 || [ \"$(systemctl is-system-running)\" = degraded ]", 120)
    backup_ok(host, tool, "remote")


def test_no_secret_in_ansible_output_at_vvv(host, tool, scenario):
    """The scenario's converge at -vvv in check mode with diffs prints none of its secrets (passphrases, backend
    credentials, the ping URL's secret part): they pass through no_log tasks and root-only files only."""
    run = subprocess.run(
        ["ansible-playbook", "-vvv", "--check", "--diff", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"],
         "--limit", f"{host.backend.get_hostname()},{scenario[tool.server_var]}", str(tool.converge)],
        capture_output=True, text=True, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    # The run did reach the provider's steps on this host.
    assert f"selfhost.backup.{tool.provider} : " in output and "PLAY RECAP" in output
    for name in tool.secrets:
        assert scenario[name] not in output, name
