"""Failure paths the restic and borg scenarios share (both on Debian 12 and 13): what must be loud and lose
nothing. Each scenario's tests/test_failure_paths.py imports these tests with the fixture ``tool`` (drills.py);
its conftest runs them after the scenario's own tests, and the one that removes everything last of all.

- an empty dump and a failed dump: the backup fails, says which part failed, keeps every good snapshot;
- bad instances, a calendar expression systemd refuses, a misspelt instances variable: the play fails naming the
  field and the rule (or the installed instances), and the host is exactly as before;
- an empty instances dict removes every instance only with <provider>_remove_unlisted.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from drills import SCENARIOS, Tool, backup_ok, flags, read, restore_ok, snapshots, wait_for, wait_until_inactive, write

__all__ = [
    "test_the_restore_scripts_hold_data_only_and_source_root_s_program",
    "test_an_empty_dump_fails_and_keeps_every_good_snapshot",
    "test_a_failed_dump_names_backup_cmd_and_its_exit_status",
    "test_the_dump_runs_without_the_tool_s_variables_and_secrets",
    "test_an_ugly_secret_round_trips_and_reaches_no_log_unit_or_script",
    "test_bad_instances_are_refused_on_the_controller_and_change_nothing",
    "test_a_calendar_the_host_refuses_stops_before_any_change",
    "test_a_misspelt_instances_variable_uninstalls_nothing",
    "test_a_repository_the_user_swapped_for_a_link_hands_nothing_over",
    "test_finally_an_empty_dict_removes_every_instance_only_when_allowed",
]

UNIT_DIR = "/etc/systemd/system"
LIBRARY = "/usr/local/lib/selfhost-backup"  # the job script's program: job.sh and <provider>.sh
EMPTY_RUNS = 3  # as many as instance local's retention keeps (keep_last 3): each could push a good one out


def host_state(host, tool: Tool) -> str:
    """Everything a provider run writes on the host, with times to the nanosecond."""
    # The repositories' directory by name only: a tool's lock files change its entries' times at any moment.
    return host.check_output(
        f"ls -la --time-style=full-iso {UNIT_DIR} /usr/local/bin {LIBRARY} /var/lib/selfhost-backup "
        f"/etc/selfhost-backup/{tool.provider}; ls -1 /srv/{tool.provider}; "
        f"sha256sum /etc/selfhost-backup/{tool.provider}/*/* {UNIT_DIR}/{tool.provider}-* 2>/dev/null; "
        "systemctl list-units --type=timer --all --plain --no-legend | awk '{print $1, $2, $3, $4}' | sort; "
        "test ! -e /root/bad-settings-marker && echo no-marker"
    )


def playbook(host, tool: Tool, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"],
         "--limit", host.backend.get_hostname(), str(SCENARIOS / tool.provider / name)],
        capture_output=True, text=True, check=False,
    )


def refused_and_unchanged(host, tool: Tool, scenario: dict, name: str, expected: list) -> str:
    """Run a playbook that must fail: every expected text in its output, no secret, and the host as before."""
    before = host_state(host, tool)
    assert "no-marker" in before
    run = playbook(host, tool, name)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    for text in expected:
        assert text in output, (text, output)
    for secret in tool.secrets:
        assert scenario[secret] not in output, secret
    assert "changed=0" in output, output
    assert host_state(host, tool) == before
    return output


def last_run_log(host, unit: str, text: str) -> str:
    """The journal of the unit's last run once it holds ``text`` (journald may lag behind the unit's end), else
    as it is after 20 seconds."""
    invocation = host.check_output(f"systemctl show -P InvocationID {unit}")
    read = f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={shlex.quote(invocation)}"
    host.run(f"timeout 20 sh -c {shlex.quote(f'until {read} | grep -qF -- {shlex.quote(text)}; do sleep 0.5; done')}")
    return host.check_output(read)


def test_the_restore_scripts_hold_data_only_and_source_root_s_program(host, tool):
    """The per-instance restore scripts are data (readonly assignments) and one source line; the program they
    run as root is static, root's, and changes only with the collection."""
    library = host.file(LIBRARY)
    assert (library.user, library.group, library.mode) == ("root", "root", 0o755)
    for name in ("job.sh", f"{tool.provider}.sh"):
        program = host.file(f"{LIBRARY}/{name}")
        assert (program.user, program.group, program.mode) == ("root", "root", 0o644), name
    scripts = host.check_output(f"ls /usr/local/bin/{tool.provider}-restore-*").split()
    assert scripts
    for path in scripts:
        assert host.file(path).content_string.endswith('source "$LIBRARY/job.sh"\n'), path
        # Without its last line a script runs no command: no output, no error, even with no PATH at all.
        bare = host.run(f"head -n -1 {path} | env -i /bin/bash -eu")
        assert (bare.rc, bare.stdout, bare.stderr) == (0, "", ""), (path, bare.stderr)


def test_an_empty_dump_fails_and_keeps_every_good_snapshot(host, tool):
    flags(host, tool)
    write(host, tool, "the last good content\n")
    backup_ok(host, tool, "local")
    good = snapshots(host, tool, "local")
    write(host, tool, "")
    for dummy in range(EMPTY_RUNS):
        result = host.run(f"systemctl start --wait {tool.unit('local')}")
        assert result.rc != 0
        assert host.run(f"systemctl is-failed {tool.unit('local')}").stdout.strip() == "failed"
        # Our own words; restic 0.14 already refuses an empty stdin itself ("snapshot is empty").
        log = last_run_log(host, tool.unit("local"), "backup failed")
        assert "backup_cmd exited 0 but wrote nothing" in log or "snapshot is empty" in log, log
    # Retention never ran after a failed backup: every good snapshot is still there, and latest is the last one.
    assert snapshots(host, tool, "local") == good
    write(host, tool, "overwritten\n")
    restore_ok(host, tool, "local", "latest")
    assert read(host, tool) == "the last good content\n"


def test_a_failed_dump_names_backup_cmd_and_its_exit_status(host, tool):
    write(host, tool, "partial content\n")
    before = snapshots(host, tool, "local")
    flags(host, tool, "fail-backup")
    try:
        assert host.run(f"systemctl start --wait {tool.unit('local')}").rc != 0
    finally:
        flags(host, tool)
    # request A's backup_cmd writes the file, then `test ! -e fail-backup` exits 1.
    wanted = f"backup failed (backup_cmd exit 1, {tool.provider} exit "
    assert wanted in last_run_log(host, tool.unit("local"), wanted)
    assert snapshots(host, tool, "local") == before


def test_the_dump_runs_without_the_tool_s_variables_and_secrets(host, tool, scenario):
    """The remote instance's repository URL (restic: with the REST password) and the tools' secrets reach the
    tool only: the request's user could read the dump's environment in /proc/<pid>/environ."""
    write(host, tool, "environment check\n")
    flags(host, tool, "slow-tail")
    try:
        host.check_output(f"systemctl start --no-block {tool.unit('remote')}")
        # The dump has been streamed and backup_cmd sleeps: its environment is the one the tool gave it.
        wait_for(host, "pgrep -u dbuser -x sleep >/dev/null")
        pid = host.check_output("pgrep -u dbuser -x sleep | head -n 1")
        seen = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    finally:
        flags(host, tool)
        wait_until_inactive(host, tool.unit("remote"))
    names = [line.split("=", 1)[0] for line in seen.splitlines()]
    assert "PATH" in names, seen
    assert not [name for name in names if name.startswith(("RESTIC_", "BORG_")) or name == "CREDENTIALS_DIRECTORY"]
    for secret in tool.secrets:
        assert scenario[secret] not in seen, secret
    assert host.run(f"systemctl is-failed {tool.unit('remote')}").stdout.strip() != "failed"


def test_an_ugly_secret_round_trips_and_reaches_no_log_unit_or_script(host, tool, scenario):
    """Instance ugly's passphrase holds both quote kinds, a backslash, $, a backtick, %, non-ASCII letters and a
    literal \\n. It works, and its token is in no journal line (ansible-core logs module invocations there),
    unit file or restore script, however they would escape the rest."""
    write(host, tool, "ugly secret content\n")
    backup_ok(host, tool, "ugly")
    write(host, tool, "overwritten\n")
    restore_ok(host, tool, "ugly", "latest")
    assert read(host, tool) == "ugly secret content\n"
    token = scenario[f"{tool.provider}_test_ugly_token"]
    secret_file = host.file(f"/etc/selfhost-backup/{tool.provider}/ugly/passphrase")
    assert secret_file.user == "root" and secret_file.mode == 0o600 and token in secret_file.content_string
    journal = host.check_output("journalctl --no-pager -o cat")
    assert "Invoked with" in journal  # module invocations are logged there: the check below means something
    files = host.check_output(f"cat {UNIT_DIR}/{tool.provider}-* /usr/local/bin/{tool.provider}-restore-*")
    for text in (journal, files):
        assert token not in text


def test_bad_instances_are_refused_on_the_controller_and_change_nothing(host, tool, scenario):
    var = f"{tool.provider}_instances"
    expected = [
        f"{var}[1]: instance name must be a string",
        "instance name must match",  # "trailing\n": $ would have matched before the newline
        f"{var}: instances 'web' and 'web-check' would both own {tool.provider}-backup-web-check.service",
        f"{var}.floats.settings.retention.keep_daily: 7.0 is not of type 'integer' (rule: type)",
        f"{var}.floats.settings.retention.keep_last: ",
        f"{var}.no_request.request: is required",
        f"{var}.system_dir.settings.repository.path: '/etc' is a system directory or holds one",
        f"{var}.dot_dot.settings.repository.path: '/srv/{tool.provider}/../../etc' is not a normalised absolute path",
    ]
    if tool.provider == "restic":
        expected += ["environment_secrets.LD_PRELOAD, environment_secrets.PATH, environment_secrets.UID",
                     "environment_secrets.RESTIC_PASSWORD_FILE is set by the role itself"]
    else:
        expected += [f"{var}.zstd_level.settings.compression", f"{var}.obfuscate.settings.compression"]
    refused_and_unchanged(host, tool, scenario, "bad_instances.yml", expected)
    if tool.provider == "restic":
        # The order of site.yml: a typo in borg's settings stops the play before restic changes anything.
        refused_and_unchanged(host, tool, scenario, "two_providers.yml",
                              ["borg_instances.typo.settings.compresion: unknown key"])
        assert not host.file(f"{UNIT_DIR}/restic-backup-fresh.service").exists


def test_a_calendar_the_host_refuses_stops_before_any_change(host, tool, scenario):
    refused_and_unchanged(host, tool, scenario, "bad_calendar.yml", [
        f"{tool.provider}_instances.calendar.settings.schedule.on_calendar:",
        "is not a systemd calendar expression on this host (rule: systemd-analyze calendar)",
    ])
    assert not host.file(f"/etc/selfhost-backup/{tool.provider}/calendar").exists


def test_a_misspelt_instances_variable_uninstalls_nothing(host, tool, scenario):
    output = refused_and_unchanged(host, tool, scenario, "misspelt_instances.yml", [
        f"{tool.provider}_instances is empty or undefined, but this host has {tool.provider} instances installed",
        f"set {tool.provider}_remove_unlisted: true",
    ])
    assert "local" in output.split("instances installed:", 1)[1]
    backup_ok(host, tool, "local")


def test_a_repository_the_user_swapped_for_a_link_hands_nothing_over(host, tool, scenario):
    """The request's user owns its data directory; it puts a link where its repository will be, to a root-owned
    directory. The converge must fail naming the link, and the directory must stay root's."""
    victim, link = "/opt/selfhost-backup-victim", f"{tool.data_dir}/attack"
    host.check_output(f"install -d -m 0755 -o root -g root {victim} && runuser -u dbuser -- ln -sfn {victim} {link}")
    try:
        # (restic keeps a local repository's path with its secrets, so Ansible masks it in the message.)
        refused_and_unchanged(host, tool, scenario, "symlink_attack.yml", [
            "is a symbolic link in a directory that a user other than root can write; refusing to follow it"])
        assert host.check_output(f"stat -c '%U %a' {victim}") == "root 755"
        assert not host.file(f"/etc/selfhost-backup/{tool.provider}/attack").exists
        # Nor is a directory of another user taken over (or root's, unless it is empty).
        host.check_output(f"rm -f {link} && install -d -m 0750 -o nobody {link}")
        output = refused_and_unchanged(host, tool, scenario, "symlink_attack.yml", [])
        # restic 0.14 cannot tell a directory it may not read from a broken repository: the repository check
        # refuses it first, still before any change.
        assert ("exists and belongs to nobody, not to dbuser: it is not taken over" in output
                or "restic cannot open the repository" in output), output
        assert host.check_output(f"stat -c '%U %a' {link}") == "nobody 750"
    finally:
        host.check_output(f"rm -rf {link} && rmdir {victim}")


def test_finally_an_empty_dict_removes_every_instance_only_when_allowed(host, tool):
    run = playbook(host, tool, "remove_all.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert host.run(f"ls /var/lib/selfhost-backup/{tool.provider}-backup-*.json").rc != 0
    assert host.run(f"ls {UNIT_DIR}/{tool.provider}-backup-*").rc != 0
    assert host.run(f"ls /usr/local/bin/{tool.provider}-restore-*").rc != 0
    # Repositories are never deleted.
    assert host.file(f"/srv/{tool.provider}/local/config").exists
