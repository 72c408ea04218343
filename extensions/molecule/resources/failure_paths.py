"""Failure paths the restic and borg scenarios share (both on Debian 12 and 13): what must be loud and lose
nothing. Each scenario's tests/test_failure_paths.py imports these tests with the fixture ``tool`` (drills.py);
its conftest runs them after the scenario's own tests, and the one that removes everything last of all.

- an empty dump and a failed dump: the backup fails, says which part failed, keeps every good snapshot;
- bad instances, a calendar expression systemd refuses, a misspelt instances variable: the play fails naming the
  field and the rule (or the installed instances), and the host is exactly as before;
- an empty instances dict removes every instance only with <provider>_remove_unlisted.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shlex
import subprocess

from drills import SCENARIOS, Tool, backup_ok, flags, read, restore_ok, snapshots, wait_for, wait_until_inactive, write
from provider_checks import METRICS_DIR, metrics_of

__all__ = [
    "test_the_restore_scripts_hold_data_only_and_source_root_s_program",
    "test_an_empty_dump_fails_and_keeps_every_good_snapshot",
    "test_a_failed_dump_names_backup_cmd_and_its_exit_status",
    "test_the_dump_runs_without_the_tool_s_variables_and_secrets",
    "test_an_ugly_secret_round_trips_and_reaches_no_log_unit_or_script",
    "test_no_secret_in_any_command_line_or_the_user_s_environments_during_a_backup_and_a_restore",
    "test_metrics_are_written_as_the_directory_s_owner_and_never_where_another_user_can_lead_root",
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


# Run as root on the host while a backup or a restore runs: every process's command line and, for the processes
# of the request's user, the environment, as often as it can read them. It is told no secret (its own command
# line would show it): it prints what it read, as JSON, and the test searches that. One entry per distinct
# (pid, command line, environment), with the numbers of the samples that saw it.
#   sampler backup <user> <unit>                     start the unit, sample until it is over
#   sampler restore <user> <script> <fifo> <out>     run "<script> restore latest", whose restore_cmd writes into
#                                                    <fifo>: sample 5 s once it waits there, then drain <fifo>
#                                                    into <out> and sample until the restore is over
SAMPLER = r'''
import base64, json, os, pwd, subprocess, sys, threading, time

mode, user = sys.argv[1], pwd.getpwnam(sys.argv[2]).pw_uid
seen, count = {}, 0


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def sample():
    global count
    count += 1
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline, comm = read(f"/proc/{pid}/cmdline"), read(f"/proc/{pid}/comm").strip()
            uids = [int(uid) for uid in read(f"/proc/{pid}/status").split(b"\nUid:", 1)[1].split(b"\n", 1)[0].split()]
            environ = read(f"/proc/{pid}/environ") if user in uids else None
        except (OSError, IndexError):
            continue  # gone meanwhile
        key = (pid, comm, cmdline, environ)
        seen.setdefault(key, []).append(count)


def active(unit):
    return subprocess.run(["systemctl", "show", "-P", "ActiveState", unit], capture_output=True,
                          text=True).stdout.strip()


result = {}
deadline = time.monotonic() + 120
if mode == "backup":
    unit = sys.argv[3]
    subprocess.run(["systemctl", "start", "--no-block", unit], check=True)
    started = False
    while time.monotonic() < deadline:
        sample()
        state = active(unit)
        started = started or state in ("activating", "deactivating", "active")
        if started and state not in ("activating", "deactivating"):
            break
        time.sleep(0.05)
    result["state"] = active(unit)
else:
    script, fifo, out = sys.argv[3:6]
    restore = subprocess.Popen([script, "restore", "latest"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    errors = []
    threading.Thread(target=lambda: errors.append(restore.stderr.read()), daemon=True).start()

    def drain():
        with open(fifo, "rb") as source, open(out, "wb") as target:
            target.write(source.read())

    def writer_waits():
        """restore_cmd (cat > <fifo>) runs, as the request's user: it blocks on the FIFO from now on."""
        return any(environ is not None and b"cat > " in cmdline.replace(b"\0", b" ")
                   for pid, comm, cmdline, environ in seen)

    drainer = threading.Thread(target=drain, daemon=True)
    # 5 s from when restore_cmd is seen waiting, not from the start: a loaded host starts the tool late.
    held = None
    while restore.poll() is None and time.monotonic() < deadline:
        sample()
        if held is None and writer_waits():
            held = time.monotonic() + 5
        if held is not None and time.monotonic() > held and drainer.ident is None:
            drainer.start()
        time.sleep(0.05)
    if restore.poll() is None:
        restore.kill()
    drainer.join(10)
    time.sleep(0.2)
    result["rc"] = restore.wait()
    result["stderr"] = b"".join(errors).decode("utf-8", "replace")
encode = lambda data: None if data is None else base64.b64encode(data).decode()
result["samples"] = count
result["processes"] = [[int(pid), comm.decode("utf-8", "replace"), encode(cmdline), encode(environ), samples]
                       for (pid, comm, cmdline, environ), samples in seen.items()]
print(json.dumps(result))
'''
SAMPLER_PATH = "/root/selfhost-backup-test-sampler.py"


@dataclasses.dataclass(frozen=True)
class Sampled:
    """One process as the sampler saw it in some of its samples (its command line and, for the request's user,
    its environment, as bytes)."""

    pid: int
    comm: str
    argv: tuple
    environ: bytes | None
    samples: tuple

    def is_the_tool(self, tool: Tool) -> bool:
        """restic or borg itself, or setpriv about to become it (the root side of an interactive run)."""
        if self.comm == tool.provider:
            return True
        program = self.argv[self.argv.index(b"--") + 1] if self.comm == "setpriv" and b"--" in self.argv[:-1] else b""
        return os.path.basename(program) == tool.provider.encode()


def sample_processes(host, *args: str) -> tuple[dict, list]:
    """Run the sampler on the host (see SAMPLER): what it reported, and what it saw."""
    host.check_output(f"printf %s {shlex.quote(base64.b64encode(SAMPLER.encode()).decode())} | base64 -d > {SAMPLER_PATH}")
    report = json.loads(host.check_output(f"python3 {SAMPLER_PATH} {' '.join(shlex.quote(arg) for arg in args)}"))
    seen = [Sampled(pid, comm, tuple(base64.b64decode(cmdline).split(b"\0")) if cmdline else (),
                    None if environ is None else base64.b64decode(environ), tuple(samples))
            for pid, comm, cmdline, environ, samples in report.pop("processes")]
    return report, seen


def secrets_exposed(seen: list, tool: Tool, scenario: dict) -> tuple[list, dict]:
    """Which sampled processes show a secret of the scenario: on a command line (any process), and in the
    environment of a process of the request's user other than the tool, as {pid: [(sample, comm, secret)]}."""
    secrets = {name: scenario[name].encode() for name in tool.secrets}
    in_argv = [(entry.comm, name) for entry in seen for name, secret in secrets.items()
               if secret in b"\0".join(entry.argv)]
    in_environ: dict = {}
    for entry in seen:
        if entry.environ is None or entry.is_the_tool(tool):
            continue
        for name, secret in secrets.items():
            if secret in entry.environ:
                in_environ.setdefault(entry.pid, []).extend((sample, entry.comm, name) for sample in entry.samples)
    return in_argv, in_environ


def assert_no_secret_sampled(seen: list, tool: Tool, scenario: dict) -> None:
    in_argv, in_environ = secrets_exposed(seen, tool, scenario)
    assert not in_argv, in_argv
    # The tool hands its whole environment to the dump's wrapper (RUN_BACKUP_CMD in job.sh), which replaces it
    # with a clean one at once (exec env -u ...): that moment may fall into one sample, never into two.
    lasting = {pid: hits for pid, hits in in_environ.items() if len({hit[0] for hit in hits}) > 1}
    assert not lasting, lasting


def test_no_secret_in_any_command_line_or_the_user_s_environments_during_a_backup_and_a_restore(host, tool, scenario):
    """While a backup of instance ugly runs (its dump sleeps 8 s after streaming) and while an interactive
    restore of it runs (its restore_cmd blocked on a FIFO for 5 s, the tool blocked writing), the process table
    is sampled every 50 ms: no secret of the scenario (the ugly one by its token) is on any command line, and
    none is in the environment of any process of the request's user but the tool's own."""
    content = host.check_output(f"head -c 1100000 /dev/urandom | base64 > {tool.data_dir}/app.txt && "
                                f"chown dbuser {tool.data_dir}/app.txt && sha256sum < {tool.data_dir}/app.txt")
    flags(host, tool, "slow-tail")
    try:
        report, seen = sample_processes(host, "backup", "dbuser", tool.unit("ugly"))
    finally:
        flags(host, tool)
        wait_until_inactive(host, tool.unit("ugly"))
    assert report["state"] == "inactive", (report, host.run(f"journalctl --no-pager -n 30 -u {tool.unit('ugly')}").stdout)
    # The samples caught the dump (its sleep, as the request's user) and the tool while they ran.
    dump = {sample for entry in seen if entry.comm == "sleep" and entry.environ is not None for sample in entry.samples}
    tool_seen = [entry for entry in seen if entry.is_the_tool(tool) and entry.environ is not None]
    assert len(dump) >= 20 and tool_seen, (report["samples"], len(dump))
    if tool.provider == "restic":
        # The environment secret (the ugly value) is the tool's: the sampler reads environments where it is.
        assert any(scenario["restic_test_ugly_token"].encode() in entry.environ for entry in tool_seen)
    assert_no_secret_sampled(seen, tool, scenario)

    fifo, out = f"{tool.data_dir}/app.txt", "/root/selfhost-backup-test-restored"
    host.check_output(f"rm -f {fifo} {out} && mkfifo -m 0600 {fifo} && chown dbuser {fifo}")
    try:
        report, seen = sample_processes(host, "restore", "dbuser", f"/usr/local/bin/{tool.provider}-restore-ugly",
                                        fifo, out)
        restored = host.check_output(f"sha256sum < {out}")
    finally:
        # Never leave the FIFO for the next test: a writer would block on it.
        host.check_output(f"if pgrep -u dbuser -f 'cat > {fifo}' >/dev/null; then timeout 20 cat {fifo} >/dev/null; fi; "
                          f"rm -f {fifo} {out}")
        write(host, tool, "after the sampled restore\n")
    assert report["rc"] == 0, report
    assert restored == content
    waiting = {sample for entry in seen if entry.environ is not None and b"cat > " in b" ".join(entry.argv)
               for sample in entry.samples}
    tool_seen = [entry for entry in seen if entry.is_the_tool(tool) and entry.environ is not None]
    assert len(waiting) >= 10 and tool_seen, (report["samples"], len(waiting))
    assert_no_secret_sampled(seen, tool, scenario)


METRICS_USER = "selfhost-metrics"  # a user like Debian's prometheus, made and removed by the test below


def metrics_run(host, tool: Tool, expected: str = "") -> str:
    """A good backup of instance local; its journal once it holds the finish hook's ``expected`` message."""
    backup_ok(host, tool, "local")
    return last_run_log(host, tool.unit("local"), expected) if expected else ""


def test_metrics_are_written_as_the_directory_s_owner_and_never_where_another_user_can_lead_root(host, tool):
    """Instance local's monitoring.metrics_directory on a real host, between backups: owned by another user (like
    Debian's prometheus), the file is written as that user, and a link that user puts in the file's place leads
    nowhere; group-writable, no file is written and the journal says why; a link that user puts where the
    directory was (it owns the parent) makes root neither write nor create anything where it points. Root-only
    again afterwards, root writes it as before."""
    parent = os.path.dirname(METRICS_DIR)
    prom = f"{METRICS_DIR}/{tool.provider}-backup-local.prom"
    victim_dir, victim_file = "/root/selfhost-metrics-victim", "/root/selfhost-metrics-victim.txt"
    stat = "stat -c '%U:%G %a %F'"
    metrics_run(host, tool)  # the first run's hook makes the directory
    before = host.check_output(f"{stat} {parent} {METRICS_DIR}")
    as_user = f"runuser -u {METRICS_USER} --"
    host.check_output(f"useradd --system --no-create-home --shell /usr/sbin/nologin {METRICS_USER} && "
                      f"install -d -m 0700 {victim_dir} && printf 'root only\\n' > {victim_file} && chmod 0600 {victim_file}")
    victim = f"{stat} {victim_dir} {victim_file}; ls -A {victim_dir}; sha256sum {victim_file}"
    victim_before = host.check_output(victim)
    try:
        # Another user's directory: that user writes the file (mode 0644, for the exporter).
        host.check_output(f"chmod 0755 {parent} && chown {METRICS_USER}: {METRICS_DIR} && chmod 0755 {METRICS_DIR} && "
                          f"rm -f {prom}")
        metrics_run(host, tool)
        assert host.check_output(f"{stat} {prom}") == f"{METRICS_USER}:{METRICS_USER} 644 regular file"
        assert metrics_of(host, tool.provider, "local")["selfhost_backup_last_exit_status"] == 0
        # That user swaps the file for a link to a root-only file: the rename replaces the link, the file is intact.
        host.check_output(f"{as_user} ln -sfn {victim_file} {prom}")
        metrics_run(host, tool)
        assert host.check_output(f"{stat} {prom}") == f"{METRICS_USER}:{METRICS_USER} 644 regular file"
        assert host.check_output(victim) == victim_before

        # Group-writable (and root's): anyone in the group could swap root's temporary file. No file, and why.
        host.check_output(f"chown root:root {METRICS_DIR} && chmod 0775 {METRICS_DIR} && rm -f {prom}")
        expected = f"{METRICS_DIR} can be changed by a group or by other users: no metrics written"
        log = metrics_run(host, tool, expected)
        assert expected in log, log
        assert not host.file(prom).exists

        # That user owns the parent and puts a link to a root-only directory where the metrics directory was.
        host.check_output(f"chmod 0755 {METRICS_DIR} && mv {METRICS_DIR} {METRICS_DIR}.away && "
                          f"chown {METRICS_USER}: {parent} && {as_user} ln -s {victim_dir} {METRICS_DIR}")
        expected = f"{METRICS_DIR} is a symbolic link in a directory that a user other than root can change: no metrics"
        log = metrics_run(host, tool, expected)
        assert host.check_output(victim) == victim_before
        assert expected in log, log
    finally:
        host.check_output(f"if [ -L {METRICS_DIR} ]; then rm -f {METRICS_DIR}; fi; "
                          f"if [ -d {METRICS_DIR}.away ]; then mv {METRICS_DIR}.away {METRICS_DIR}; fi; "
                          f"rm -f {prom} && chown root:root {parent} {METRICS_DIR} && "
                          f"rm -rf {victim_dir} {victim_file} && userdel {METRICS_USER}")
        owners, modes = zip(*(line.split()[:2] for line in before.splitlines()))
        for path, owner, mode in zip((parent, METRICS_DIR), owners, modes):
            host.check_output(f"chown {owner} {path} && chmod {mode} {path}")
    assert host.check_output(f"{stat} {parent} {METRICS_DIR}") == before
    assert host.check_output(f"find / -xdev -name '{tool.provider}-backup-local.prom*' ! -path '{METRICS_DIR}/*'") == ""
    metrics_run(host, tool)
    assert host.check_output(f"{stat} {prom}") == "root:root 644 regular file"


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
    # A secrets directory without a job (a first converge that failed before its jobs) counts as installed too.
    leftover = f"/etc/selfhost-backup/{tool.provider}/leftover"
    host.check_output(f"install -d -m 0700 {leftover} && echo key > {leftover}/ssh_key")
    try:
        output = refused_and_unchanged(host, tool, scenario, "misspelt_instances.yml", [
            f"{tool.provider}_instances is empty or undefined, but this host has {tool.provider} instances installed",
            f"set {tool.provider}_remove_unlisted: true",
        ])
        installed = output.split("instances installed:", 1)[1].split(". Nothing was changed", 1)[0]
        assert "local" in installed and "leftover" in installed, output
        assert host.file(f"{leftover}/ssh_key").exists
    finally:
        host.check_output(f"rm -rf {leftover}")
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
    assert host.run(f"ls {UNIT_DIR}/{tool.provider}-drill-* /var/lib/selfhost-backup/{tool.provider}-drill-*").rc != 0
    assert host.run(f"ls /usr/local/bin/{tool.provider}-restore-*").rc != 0
    # Repositories are never deleted.
    assert host.file(f"/srv/{tool.provider}/local/config").exists
