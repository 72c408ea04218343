"""Checks of the backup jobs and restore scripts that the restic and borg scenarios' own tests (test_restic.py,
test_borg.py) make the same way. Each test there calls one with its provider's Tool, in its scenario's order (the
tests share the hosts' state), and adds what only its provider does. The failure notification, status and
monitoring checks are in provider_checks.py.

Instance names are those both scenarios' converge.yml install: local (request A, with stop_units, monitoring and a
check job), shared_a and shared_b (requests A and B in one repository), remote (request A to the server container).
"""

from __future__ import annotations

from drills import Tool, backup, backup_new, backup_ok, read, restore, snapshots, write
from failure_paths import playbook
from provider_checks import (assert_failed_run_monitored, assert_failure_reported, assert_good_run_monitored,
                             assert_healthy, notified_path, ping_check, pings_seen, server_host)

UNIT_DIR = "/etc/systemd/system"


def assert_units_and_timers_installed(host, tool: Tool, instances: tuple) -> str:
    """Every instance's timer is listed and enabled and its restore script executable; instance retired is not
    installed; instance local's timer, service and check service are the ones its settings ask for and pass
    ``systemd-analyze verify``. Returns the listed timers."""
    provider = tool.provider
    listed = host.check_output("systemctl list-timers --all --no-legend --plain")
    for instance in instances:
        assert f"{provider}-backup-{instance}.timer" in listed
        assert host.service(f"{provider}-backup-{instance}.timer").is_enabled
        assert host.file(f"/usr/local/bin/{provider}-restore-{instance}").mode == 0o755
    assert f"{provider}-backup-local-check.timer" in listed
    assert not host.file(f"{UNIT_DIR}/{provider}-backup-retired.service").exists
    timer = host.file(f"{UNIT_DIR}/{provider}-backup-local.timer").content_string
    assert "OnCalendar=*-*-* 03:00:00" in timer and "RandomizedDelaySec=60" in timer
    service = host.file(f"{UNIT_DIR}/{tool.unit('local')}").content_string
    assert "User=dbuser" in service and "StartLimitIntervalSec=0" in service
    assert "Nice=10" in service and "IOSchedulingClass=idle" in service
    assert f"LoadCredential=passphrase:/etc/selfhost-backup/{provider}/local/passphrase" in service
    assert f"ReadWritePaths=/srv/{provider}/local" in service
    assert host.run(f"systemd-analyze verify {UNIT_DIR}/{tool.unit('local')} "
                    f"{UNIT_DIR}/{provider}-backup-local-check.service").rc == 0
    return listed


def assert_round_trip_by_id_and_latest(host, tool: Tool, instance: str, contents: tuple = ("app one\nline 2\n",
                                       "app two\n\ttabs and 100% $HOME\n"), stopped_unit: str = "") -> None:
    """Two backups of request A's app.txt (the two ``contents``), then app.txt removed: a restore of the first
    snapshot by its id (restic) or archive name (borg) brings back the first content exactly, latest the second.
    With ``stopped_unit`` (stop_units): the restore stopped that unit and started it again."""
    first, second = contents
    write(host, tool, first)
    first_id = backup_new(host, tool, instance)
    write(host, tool, second)
    backup_new(host, tool, instance)
    host.check_output(f"rm -f {tool.data_dir}/app.txt")
    started_at = f"systemctl show -P ActiveEnterTimestampMonotonic {stopped_unit}"
    started = host.check_output(started_at) if stopped_unit else ""

    result = restore(host, tool, instance, first_id)
    assert result.rc == 0, result.stderr
    assert read(host, tool) == first
    result = restore(host, tool, instance, "latest")
    assert result.rc == 0, result.stderr
    assert read(host, tool) == second
    if stopped_unit:
        assert f"stopping {stopped_unit}" in result.stderr
        assert host.service(stopped_unit).is_running
        assert host.check_output(started_at) != started


def assert_a_failed_dump_keeps_no_snapshot(host, tool: Tool, scenario: dict) -> None:
    """A good backup of instance local (healthy, monitored as good), then one whose dump fails (request A's flag
    fail-backup): the unit fails, the failure is reported and monitored, no snapshot is added, and latest still
    restores the good content."""
    provider = tool.provider
    server = server_host(scenario[tool.server_var])
    write(host, tool, "good content\n")
    backup_ok(host, tool, "local")
    assert_healthy(host, provider, "local")
    before = snapshots(host, tool, "local")
    good = assert_good_run_monitored(host, server, scenario, provider, "local", len(before))
    pings_before = len(pings_seen(server, ping_check(host, scenario)))
    write(host, tool, "broken content\n")
    host.check_output(f"rm -f {notified_path(provider, 'local')} && touch {tool.data_dir}/fail-backup")
    try:
        result = backup(host, tool, "local")
    finally:
        host.check_output(f"rm -f {tool.data_dir}/fail-backup")
    assert result.rc != 0
    assert host.run(f"systemctl is-failed {tool.unit('local')}").stdout.strip() == "failed"
    assert_failure_reported(host, provider, "local")
    assert_failed_run_monitored(host, server, scenario, provider, "local", good, pings_before)
    assert snapshots(host, tool, "local") == before
    assert restore(host, tool, "local", "latest").rc == 0
    assert read(host, tool) == "good content\n"


def assert_a_failed_restore_changes_nothing(host, tool: Tool, missing: str):
    """A restore of instance local's snapshot ``missing``, which does not exist, fails before the restore command
    runs (app.txt is untouched) and the application stopped for it runs again; a path as the snapshot fails too.
    Returns the failed restore's result."""
    write(host, tool, "untouched\n")
    result = restore(host, tool, "local", missing)
    assert result.rc != 0
    assert read(host, tool) == "untouched\n"
    assert host.service(f"{tool.provider}-test-app.service").is_running
    assert restore(host, tool, "local", "../etc").rc != 0
    return result


def assert_latest_per_instance_in_a_shared_repository(host, tool: Tool) -> None:
    """Instances shared_a (request A, app.txt) and shared_b (request B, other.txt) back up into one repository,
    shared_a twice: each one's latest restores its own newest content."""
    write(host, tool, "shared a one\n")
    write(host, tool, "shared b one\n", name="other.txt")
    backup_ok(host, tool, "shared_a")
    backup_ok(host, tool, "shared_b")
    write(host, tool, "shared a two\n")
    backup_ok(host, tool, "shared_a")
    host.check_output(f"rm -f {tool.data_dir}/app.txt {tool.data_dir}/other.txt")
    assert restore(host, tool, "shared_b", "latest").rc == 0
    assert restore(host, tool, "shared_a", "latest").rc == 0
    assert read(host, tool, "other.txt") == "shared b one\n"
    assert read(host, tool) == "shared a two\n"


def watch_a_remote_backup_and_restore(host, tool: Tool, columns: str) -> tuple[str, str]:
    """Every process's ``ps -eo <columns>``, sampled while instance remote backs up (request A's flag slow: the
    backup_cmd sleeps 4 s first), and sampled while it restores latest."""
    unit = tool.unit("remote")
    host.check_output(f"touch {tool.data_dir}/slow")
    try:
        host.check_output(f"systemctl start --no-block {unit}")
        seen = host.check_output(f"for i in $(seq 1 12); do ps -eo {columns}; sleep 0.25; done")
        host.run(f"timeout 60 sh -c 'while [ \"$(systemctl is-active {unit})\" = activating ]; do sleep 0.5; done'")
    finally:
        host.check_output(f"rm -f {tool.data_dir}/slow")
    restore_seen = host.check_output(f"({tool.provider}-restore-remote restore latest >/dev/null 2>&1 &) ; "
                                     f"for i in $(seq 1 8); do ps -eo {columns}; sleep 0.25; done; sleep 2")
    return seen, restore_seen


def assert_secrets_hidden(host, tool: Tool, scenario: dict, secrets: tuple, remote_files: tuple, *seen: str) -> None:
    """No secret (the scenario variables ``secrets``) in what was ``seen``, in the units and restore scripts, or in
    the journal; instance remote's secret files (``remote_files``) and local's ping URL are root's only."""
    provider = tool.provider
    files = host.check_output(f"cat {UNIT_DIR}/{provider}-backup-* /usr/local/bin/{provider}-restore-*")
    journal = host.check_output("journalctl --no-pager -o cat")
    for text in (*seen, files, journal):
        for name in secrets:
            assert scenario[name] not in text, name
    for path in remote_files:
        secret_file = host.file(f"/etc/selfhost-backup/{provider}/remote/{path}")
        assert secret_file.user == "root" and secret_file.mode == 0o600
    assert host.file(f"/etc/selfhost-backup/{provider}/remote").mode == 0o700
    ping_url = host.file(f"/etc/selfhost-backup/{provider}/local/ping_url")
    assert ping_url.user == "root" and ping_url.mode == 0o600 and scenario["ping_monitor_secret"] in ping_url.content_string


def assert_restore_script_help_and_misuse(host, tool: Tool) -> None:
    """--help explains; no command or an unknown one fails; the request's user cannot run it."""
    script = f"{tool.provider}-restore-local"
    helped = host.run(f"{script} --help")
    assert helped.rc == 0 and "restore latest" in helped.stdout
    assert host.run(script).rc == 2
    assert host.run(f"{script} backup").rc != 0
    assert host.run(f"setpriv --reuid=dbuser --regid=dbuser --init-groups {script} snapshots").rc != 0


def host_state(host, tool: Tool) -> str:
    """The units, commands, manifests, secrets and timers on the host, with their times."""
    return host.check_output(
        f"ls -la --time-style=full-iso {UNIT_DIR} /usr/local/bin /var/lib/selfhost-backup /etc/selfhost-backup/{tool.provider}; "
        "systemctl list-units --type=timer --all --plain --no-legend | awk '{print $1, $2, $3, $4}' | sort; "
        "test ! -e /root/bad-settings-marker && echo no-marker"
    )


def assert_bad_settings_refused_and_nothing_changed(host, tool: Tool, scenario: dict, fields: tuple) -> None:
    """bad_settings.yml fails on the controller naming each of the instance bad's ``fields``, shows no passphrase,
    changes nothing, and never reaches the task that would leave /root/bad-settings-marker."""
    before = host_state(host, tool)
    run = playbook(host, tool, "bad_settings.yml")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    for field in fields:
        assert f"{tool.provider}_instances.bad.settings.{field}" in output, output
    assert scenario[f"{tool.provider}_test_passphrase"] not in output
    assert "changed=0" in output, output
    assert host_state(host, tool) == before
    assert "no-marker" in before


def assert_remove_yml_removes(host, tool: Tool, removed: tuple, repositories: tuple) -> None:
    """remove.yml (instances disabled or no longer listed) removes the ``removed`` instances' units, restore
    scripts, secrets and manifests, and never deletes a repository (``repositories`` are still there)."""
    provider = tool.provider
    run = playbook(host, tool, "remove.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    for instance in removed:
        assert not host.file(f"{UNIT_DIR}/{tool.unit(instance)}").exists, instance
        assert not host.file(f"/usr/local/bin/{provider}-restore-{instance}").exists, instance
        assert not host.file(f"/etc/selfhost-backup/{provider}/{instance}").exists, instance
        assert not host.file(f"/var/lib/selfhost-backup/{provider}-backup-{instance}.json").exists, instance
    # Instance local stays, without its drill in remove.yml: the drill's units and manifest go.
    assert host.file(f"{UNIT_DIR}/{tool.unit('local')}").exists
    assert host.run(f"ls {UNIT_DIR}/{provider}-drill-* /var/lib/selfhost-backup/{provider}-drill-*").rc != 0
    for repository in repositories:
        assert host.file(f"/srv/{provider}/{repository}/config").exists, repository
