# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rendered borg job script run by bash against a fake borg: exit-code policy, failed dumps, restores, secrets."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess

import pytest

import job_library
from job_library import (BINARY_DUMP, assert_the_dump_never_reaches_a_terminal, exec_as_nobody, last_argv,
                         make_world, needs_root, run_binary, world_for_another_user)

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _job_script, _layout, _monitoring

# Records its arguments and environment, keeps the last dump as "the repository". FAKE_RC_<command> sets the exit
# code of a command; FAKE_MODERN_RC is returned instead when BORG_EXIT_CODES is not legacy (as borg 1.4 would).
FAKE_BORG = r'''#!/bin/bash
store="$FAKE_STORE"
printf '%s\0' "$@" >"$store/argv"   # the last call's arguments, exactly
id -un >"$store/user"
pw="$(sh -c "$BORG_PASSCOMMAND")"
while [ "${1#--}" != "$1" ]; do shift 2; done   # global options (--lock-wait N, --upload-ratelimit N)
cmd="$1"
args="$*"; args="${args//$'\n'/ }"; args="${args//|/:}"   # one line and field per call, whatever the arguments hold
printf '%s|%s|pw=%s|codes=%s|repo=%s|rsh=%s|base=%s|passcommand=%s\n' "$cmd" "$args" "$pw" "${BORG_EXIT_CODES:-}" \
  "$BORG_REPO" "${BORG_RSH:-}" "$BORG_BASE_DIR" "$BORG_PASSCOMMAND" >>"$store/log"
if [ "${BORG_EXIT_CODES:-}" != legacy ] && [ -n "${FAKE_MODERN_RC:-}" ]; then exit "$FAKE_MODERN_RC"; fi
rc_var="FAKE_RC_$cmd"; rc="${!rc_var:-0}"
case "$cmd" in
  init) [ -e "$store/repo" ] && { echo "A repository already exists at $BORG_REPO." >&2; exit 2; }
        [ "$rc" -eq 0 ] && touch "$store/repo" ;;
  create)
    [ -e "$store/repo" ] || { echo "Repository $BORG_REPO does not exist." >&2; exit 2; }
    args=("$@"); while [ "${args[0]}" != -- ]; do args=("${args[@]:1}"); done; args=("${args[@]:1}")
    "${args[@]}" >"$store/incoming" || { echo "Command '${args[0]}' exited" >&2; exit 2; }
    [ "$rc" -le 1 ] && mv "$store/incoming" "$store/data"
    # --json: the archive's statistics, as borg prints them.
    case " $* " in
      *" --json "*) printf '{\n  "archive": {\n    "name": "app@h1-2026-01-02T03:04:05.123456",\n'
                    printf '    "stats": {\n      "deduplicated_size": 512,\n      "original_size": %s\n' \
                      "$(wc -c <"$store/data")"
                    printf '    }\n  }\n}\n' ;;
    esac ;;
  list)
    [ -e "$store/repo" ] || { echo "Repository $BORG_REPO does not exist." >&2; exit 2; }
    [ -z "${FAKE_LIST_ERROR:-}" ] || { echo "$FAKE_LIST_ERROR" >&2; exit 2; }
    case " $* " in
      *" --json --format "*)   # the archives, as borg 1.2 lists them (local time, no offset)
        printf '{"archives": [{"archive": "%s", "id": "aa", "name": "%s", "start": "%s", "time": "%s", "hostname": "h1"},\n' \
          app@h1-2026-01-01T00:00:00.000000 app@h1-2026-01-01T00:00:00.000000 2026-01-01T00:00:00.000000 2026-01-01T00:00:00.000000
        printf '{"archive": "%s", "id": "bb", "name": "%s", "start": "%s", "time": "%s", "hostname": "h1"}],\n' \
          app@h1-2026-01-02T03:04:05.123456 app@h1-2026-01-02T03:04:05.123456 2026-01-02T03:04:05.123456 2026-01-02T03:04:05.123456
        printf '"encryption": {"mode": "repokey-blake2"}, "repository": {"id": "cc", "location": "%s"}}\n' "$BORG_REPO" ;;
      *" --format "*) wc -c <"$store/data" ;;   # the one item's size
      *" --last 1 "*) [ -e "$store/data" ] && echo app@h1-2026-01-02T03:04:05.123456 ;;
      *" --short "*) [ -e "$store/data" ] && printf '%s\n' app@h1-2026-01-01T00:00:00.000000 app@h1-2026-01-02T03:04:05.123456 ;;
      *) echo "app@h1-2026-01-01T00:00:00.000000  Thu, 2026-01-01" ;;
    esac ;;
  extract) [ "$rc" -eq 0 ] && cat "$store/data" ;;
  delete) [ "$rc" -eq 0 ] && rm -f "$store/data" ;;
esac
exit "$rc"
'''


@pytest.fixture
def world(tmp_path, job_library):
    return make_world(tmp_path, job_library, 'borg', FAKE_BORG,
                      {'passphrase': 'pw-secret', 'ssh_key': 'KEY', 'known_hosts': 'h ssh-ed25519 AAAA\n'})


def script(world, backup_cmd='printf dump-data', restore_cmd=None, remote=False, retention=True, check=False,
           notify_cmd='', metrics_file='', drill_cmd='', **extra):
    commands = _borg.Commands(
        binary=str(world / 'borg'), version=(1, 4, 0), instance='app', host='h1', backup_name='db.sql',
        repository='ssh://borg@h/srv/app' if remote else '/srv/app', cache_dir=str(world / 'cache'), remote=remote,
        encryption='repokey-blake2', compression='zstd,3',
        global_args=tuple(_borg.global_args(30)),
        retention=tuple(_borg.prune_args('app', 'h1', {'keep_last': 2} if retention else {'keep_daily': 1})),
        check=tuple(_borg.check_args()) if check else None)
    credentials = {'passphrase': str(world / 'creds' / 'passphrase')}
    if remote:
        credentials.update(ssh_key=str(world / 'creds' / 'ssh_key'), known_hosts=str(world / 'creds' / 'known_hosts'))
    spec = _job_script.ScriptSpec(
        layout=_layout.Layout('borg', 'app'), user=getpass.getuser(), backup_name='db.sql', backup_cmd=backup_cmd,
        restore_cmd=restore_cmd or f'cat > {world}/restored', credentials=credentials, env_names=(),
        stop_units=extra.pop('stop_units', ()), provider_data=_borg.shell_data(commands), library=str(world / 'lib'),
        maintenance=('backup', 'check') if check else ('backup',),
        snapshot_pattern=_borg.archive_pattern('app', 'h1'), snapshot_word='archive',
        monitoring=_monitoring.Monitoring(notify_cmd=notify_cmd, metrics_file=metrics_file), drill_cmd=drill_cmd,
        **extra)
    path = world / 'job'
    path.write_text(_job_script.render_script(spec))
    return path


def run(world, path, *args, unit=True, **env_changes):
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), 'BORG_EXIT_CODES': 'modern'}
    if unit:
        (world / 'cache').mkdir(exist_ok=True)  # systemd creates the CacheDirectory= of the unit
        env.update(CREDENTIALS_DIRECTORY=str(world / 'creds'), CACHE_DIRECTORY=str(world / 'cache'))
    else:
        # By hand the job's cache is /var/cache/<job>: the test's own instead, which the instance lock makes.
        env['CACHE_DIRECTORY'] = str(world / 'hand-cache')
    env.update(env_changes)
    return subprocess.run(['bash', str(path)] + list(args), capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def log(world):
    return [line.split('|') for line in (world / 'store' / 'log').read_text().splitlines()]


def commands_run(world):
    return [entry[0] for entry in log(world)]


def test_backup_inits_creates_prunes_and_compacts(world):
    result = run(world, script(world), 'backup')
    assert result.returncode == 0, result.stderr
    # No list after create: the dump's bytes are counted on their way to borg (an empty dump's archive is deleted).
    assert commands_run(world) == ['init', 'create', 'prune', 'compact']
    assert (world / 'store' / 'data').read_text() == 'dump-data'
    for entry in log(world):
        # The secret reaches borg through BORG_PASSCOMMAND only; BORG_EXIT_CODES=legacy overrides the caller's.
        assert entry[2] == 'pw=pw-secret' and entry[3] == 'codes=legacy' and entry[4] == 'repo=/srv/app'
        assert entry[5] == 'rsh=' and entry[6] == f'base={world}/cache'
        assert entry[7] == f'passcommand=cat {world}/creds/passphrase'
        assert 'pw-secret' not in entry[1]
    create = log(world)[1][1]
    assert '--content-from-command --stdin-name db.sql ::app@h1-{utcnow:%Y-%m-%dT%H:%M:%S.%f} -- /bin/sh -c' in create
    assert log(world)[2][1].startswith(f"prune --glob-archives {_borg.archive_glob('app', 'h1')} --keep-last 2")
    assert (world / 'cache' / _borg.INIT_MARKER).read_text() == '/srv/app\n'
    # A second backup does not try to initialise again.
    result = run(world, script(world), 'backup')
    assert result.returncode == 0, result.stderr
    assert commands_run(world)[4:] == ['create', 'prune', 'compact']


def test_a_vanished_repository_fails_the_backup_and_is_not_created_again(world):
    assert run(world, script(world), 'backup').returncode == 0
    (world / 'store' / 'repo').unlink()  # the repository is gone (wiped disk, unmounted volume)
    result = run(world, script(world), 'backup')
    assert result.returncode != 0
    assert 'does not exist' in result.stderr and 'backup failed' in result.stderr
    assert commands_run(world)[4:] == ['create']
    assert not (world / 'store' / 'repo').exists()


def test_an_existing_repository_without_marker_is_adopted(world):
    (world / 'store' / 'repo').touch()  # made by hand, or by this job before its cache was cleared
    result = run(world, script(world), 'backup')
    assert result.returncode == 0, result.stderr
    assert commands_run(world) == ['init', 'create', 'prune', 'compact']
    assert 'initialised' not in result.stderr
    assert (world / 'cache' / _borg.INIT_MARKER).read_text() == '/srv/app\n'


def test_a_marker_of_another_repository_does_not_count(world):
    (world / 'cache').mkdir()
    (world / 'cache' / _borg.INIT_MARKER).write_text('/srv/old-place\n')
    result = run(world, script(world), 'backup')
    assert result.returncode == 0, result.stderr
    assert commands_run(world)[0] == 'init' and 'initialised the repository' in result.stderr
    assert (world / 'cache' / _borg.INIT_MARKER).read_text() == '/srv/app\n'


def test_failed_dump_fails_the_backup_and_keeps_no_archive(world):
    assert run(world, script(world), 'backup').returncode == 0
    result = run(world, script(world, backup_cmd='printf partial; exit 3'), 'backup')
    assert result.returncode != 0
    assert 'backup failed (backup_cmd exit 3, borg exit 2): no archive created' in result.stderr
    assert (world / 'store' / 'data').read_text() == 'dump-data'
    assert commands_run(world)[-1] == 'create'  # no prune after a failed backup


def test_an_empty_dump_fails_deletes_its_archive_and_prunes_nothing(world):
    assert run(world, script(world), 'backup').returncode == 0
    result = run(world, script(world, backup_cmd='true'), 'backup')
    assert result.returncode != 0
    assert ('backup failed: backup_cmd exited 0 but wrote nothing (an empty dump is no backup): archive '
            'app@h1-2026-01-02T03:04:05.123456 deleted, nothing kept') in result.stderr
    assert commands_run(world)[-2:] == ['create', 'delete']  # no list (the bytes were counted), no prune, no compact
    assert '::app@h1-2026-01-02T03:04:05.123456' in log(world)[-1][1]


@pytest.mark.parametrize('backup_cmd, stored', [
    ("printf '\\000'", '\0'),                       # one NUL byte is a dump, not an empty one
    ('head -c 300000 /dev/zero | tr "\\0" x', 'x' * 300000),  # more than one pipe buffer
])
def test_the_dump_reaches_borg_unchanged_through_the_byte_count(world, backup_cmd, stored):
    result = run(world, script(world, backup_cmd=backup_cmd), 'backup')
    assert result.returncode == 0, result.stderr
    assert (world / 'store' / 'data').read_text() == stored
    assert commands_run(world) == ['init', 'create', 'prune', 'compact']


def test_an_empty_dump_fails_also_when_its_command_writes_only_to_stderr(world):
    result = run(world, script(world, backup_cmd='echo "pg_dumpall: nothing to do" >&2'), 'backup')
    assert result.returncode != 0
    assert 'backup_cmd exited 0 but wrote nothing (an empty dump is no backup)' in result.stderr
    assert 'pg_dumpall: nothing to do' in result.stderr
    assert commands_run(world)[-2:] == ['create', 'delete']


def test_a_backup_without_a_byte_count_asks_the_repository_for_the_dump_size(world, tmp_path):
    # A borg that runs the command with its output elsewhere and no count file reaches the job: the old way.
    world_script = script(world, backup_cmd='true')
    lib = world / 'lib' / 'job.sh'
    lib.write_text(lib.read_text().replace('count=$3 hide=; shift 3', 'count= hide=; shift 3'))
    result = run(world, world_script, 'backup')
    assert result.returncode != 0
    assert 'backup_cmd exited 0 but wrote nothing' in result.stderr
    assert commands_run(world)[-3:] == ['create', 'list', 'delete']


def test_an_empty_archive_that_cannot_be_deleted_says_so(world):
    result = run(world, script(world, backup_cmd='true'), 'backup', FAKE_RC_delete='2')
    assert result.returncode != 0
    assert ("backup_cmd wrote nothing, and the empty archive 'app@h1-2026-01-02T03:04:05.123456' could not be "
            'deleted: delete it by hand') in result.stderr
    assert 'prune' not in commands_run(world)


@pytest.mark.parametrize('command, rc, ok', [
    ('create', 1, True), ('create', 2, False), ('create', 137, False),
    ('prune', 1, True), ('prune', 2, False), ('compact', 1, True), ('compact', 2, False),
])
def test_exit_code_policy_of_the_backup(world, command, rc, ok):
    result = run(world, script(world), 'backup', **{f'FAKE_RC_{command}': str(rc)})
    assert (result.returncode == 0) is ok, result.stderr
    assert _borg.succeeded(command, rc) is ok
    if ok:
        assert f'borg {command} finished with a warning (exit 1): counted as success' in result.stderr


def test_borg_1_4_modern_codes_are_switched_off(world):
    # A borg that would answer with a modern warning code (107) unless BORG_EXIT_CODES=legacy: never seen.
    result = run(world, script(world), 'backup', FAKE_MODERN_RC='107')
    assert result.returncode == 0, result.stderr


def test_init_error_fails_the_backup(world):
    result = run(world, script(world), 'backup', FAKE_RC_init='2')
    assert result.returncode != 0
    assert 'cannot initialise the repository' in result.stderr
    assert commands_run(world) == ['init']
    assert not (world / 'cache' / _borg.INIT_MARKER).exists()


def test_restore_latest_and_by_name(world):
    assert run(world, script(world), 'backup').returncode == 0
    result = run(world, script(world), 'restore', 'latest')
    assert result.returncode == 0, result.stderr
    assert (world / 'restored').read_text() == 'dump-data'
    # latest is not listed first: the newest archive's name is this instance's by the glob.
    latest, extract = log(world)[-2:]
    assert latest[1] == f"list --short --last 1 --glob-archives {_borg.archive_glob('app', 'h1')}"
    assert extract[1] == 'extract --stdout ::app@h1-2026-01-02T03:04:05.123456 db.sql'
    result = run(world, script(world), 'restore', 'app@h1-2026-01-01T00:00:00.000000')
    assert result.returncode == 0, result.stderr
    assert log(world)[-1][1] == 'extract --stdout ::app@h1-2026-01-01T00:00:00.000000 db.sql'


def test_restore_of_a_missing_archive_fails_before_the_restore_command_runs(world):
    (world / 'restored').write_text('untouched')
    result = run(world, script(world), 'restore', 'latest')  # no backup yet: no archive at all
    assert result.returncode != 0 and "no archive 'latest' of instance app" in result.stderr
    assert run(world, script(world), 'backup').returncode == 0
    result = run(world, script(world), 'restore', 'app@h1-2000-01-01T00:00:00.000000')
    assert result.returncode != 0 and 'no archive' in result.stderr
    assert commands_run(world)[-1] == 'list'  # nothing extracted
    assert (world / 'restored').read_text() == 'untouched'
    result = run(world, script(world), 'restore', 'latest', FAKE_RC_list='2')
    assert result.returncode != 0 and 'cannot list the archives' in result.stderr
    assert (world / 'restored').read_text() == 'untouched'


@pytest.mark.parametrize('archive', ['other@h1-2026-01-02T03:04:05.123456', 'app@h2-2026-01-02T03:04:05.123456',
                                     'app-2026-01-02T03:04:05.123456', '../x', 'app@h1-2026', '1111aaaa'])
def test_restore_refuses_archives_of_other_instances(world, archive):
    result = run(world, script(world), 'restore', archive)
    assert result.returncode != 0
    assert 'not a valid archive:' in result.stderr


@pytest.mark.parametrize('changes', [{'FAKE_RC_extract': '1'}, {'FAKE_RC_extract': '2'}])
def test_restore_fails_on_any_extract_warning_or_error(world, changes):
    assert run(world, script(world), 'backup').returncode == 0
    result = run(world, script(world), 'restore', 'latest', **changes)
    assert result.returncode != 0


def test_restore_fails_when_the_restore_command_fails(world):
    assert run(world, script(world), 'backup').returncode == 0
    assert run(world, script(world, restore_cmd='cat >/dev/null; exit 4'), 'restore', 'latest').returncode != 0


def test_remote_uses_the_job_key_and_the_pinned_host_key(world):
    assert run(world, script(world, remote=True), 'backup').returncode == 0
    rsh = log(world)[0][5]
    assert f"-i '{world}/creds/ssh_key'" in rsh or f'-i {world}/creds/ssh_key' in rsh
    assert f'UserKnownHostsFile={world}/creds/known_hosts' in rsh
    assert 'StrictHostKeyChecking=yes' in rsh


def test_check_is_strict(world):
    path = script(world, check=True)
    assert run(world, path, 'check').returncode == 0
    assert run(world, path, 'check', FAKE_RC_check='1').returncode != 0
    assert commands_run(world) == ['check', 'check']


def test_snapshots_lists_this_instance(world):
    (world / 'store' / 'repo').touch()
    result = run(world, script(world), 'snapshots')
    assert result.returncode == 0
    assert log(world)[0][1] == f"list --glob-archives {_borg.archive_glob('app', 'h1')}"


@pytest.mark.skipif(os.geteuid() != 0, reason='an interactive restore runs as root')
@pytest.mark.parametrize('remote', [False, True])
def test_interactive_restore_copies_secrets_privately_and_removes_them(world, remote):
    before = set(os.listdir('/run'))
    assert run(world, script(world, remote=remote), 'backup').returncode == 0
    shutil.rmtree(world / 'cache')  # a restore creates it for the request's user when the unit never ran
    result = run(world, script(world, remote=remote), 'restore', 'latest', unit=False)
    assert result.returncode == 0, result.stderr
    assert (world / 'restored').read_text() == 'dump-data'
    entry = log(world)[-1]
    assert entry[2] == 'pw=pw-secret' and entry[7].startswith('passcommand=cat /run/borg-restore.')
    if remote:
        assert '/run/borg-restore.' in entry[5] and 'StrictHostKeyChecking=yes' in entry[5]
    assert set(os.listdir('/run')) == before  # the temporary copy is gone
    assert (world / 'cache').is_dir()


FAKE_JOURNALCTL = '#!/bin/sh\necho "journalctl $*"\necho "borg-restore-app: backup failed: no archive created"\n'


@pytest.mark.skipif(os.geteuid() != 0, reason='the notification runs as root, as OnFailure= starts it')
def test_notify_hands_the_log_and_what_failed_to_the_command(world):
    tools = world / 'tools'
    tools.mkdir()
    (tools / 'journalctl').write_text(FAKE_JOURNALCTL)
    (tools / 'journalctl').chmod(0o755)
    out = world / 'notified'
    command = f'{{ env | grep ^SELFHOST_BACKUP_ | sort; cat; }} > {out}'
    result = run(world, script(world, notify_cmd=command), 'notify', unit=False,
                 PATH=f'{tools}:{os.environ["PATH"]}', MONITOR_UNIT='borg-backup-app-check.service',
                 MONITOR_SERVICE_RESULT='exit-code')
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[:4] == ['SELFHOST_BACKUP_HOST=' + os.uname().nodename, 'SELFHOST_BACKUP_INSTANCE=app',
                         'SELFHOST_BACKUP_PROVIDER=borg', 'SELFHOST_BACKUP_RESULT=exit-code']
    assert lines[4] == 'SELFHOST_BACKUP_UNIT=borg-backup-app-check.service'
    assert lines[5] == 'journalctl --no-pager -o short-iso -n 50 -u borg-backup-app-check.service'
    assert lines[6] == 'borg-restore-app: backup failed: no archive created'


def test_notify_without_a_command_does_nothing_and_needs_root(world):
    result = run(world, script(world), 'notify', unit=False)
    if os.geteuid() == 0:
        assert result.returncode == 0 and result.stderr == ''
    else:
        assert result.returncode != 0 and 'run this as root' in result.stderr


def test_backup_leaves_bytes_added_and_archive_count_for_the_metrics(world):
    result = run(world, script(world, metrics_file=str(world / 'app.prom')), 'backup')
    assert result.returncode == 0, result.stderr
    # The archive's deduplicated size from create --json; the instance's archives as listed (two in the fake).
    assert (world / 'cache' / 'last-backup').read_text() == 'added_bytes=512\nsnapshots=2\n'
    # The journal gets one readable line (the dump's own size as read); borg's statistics go to the cache directory.
    assert '"deduplicated_size"' not in result.stdout + result.stderr
    assert re.search(r'^borg-restore-app: backup of instance app: archive app@h1-2026-01-02T03:04:05.123456, 9 B read, 512 B added, '
                     r'\d+s$', result.stdout, re.M), result.stdout
    stats = json.loads((world / 'cache' / 'last-backup.json').read_text())
    assert stats['archive']['stats']['deduplicated_size'] == 512


def test_a_failed_borg_backup_leaves_no_figures(world):
    result = run(world, script(world, backup_cmd='exit 3', metrics_file=str(world / 'app.prom')), 'backup')
    assert result.returncode != 0
    assert not (world / 'cache' / 'last-backup').exists()


def test_backup_cmd_sees_no_borg_variable_and_no_credentials(world):
    result = run(world, script(world, backup_cmd=f'env > {world}/dump-env; printf dump-data'), 'backup')
    assert result.returncode == 0, result.stderr
    seen = (world / 'dump-env').read_text()
    names = [line.split('=', 1)[0] for line in seen.splitlines()]
    assert not [name for name in names if name.startswith('BORG_') or name == 'CREDENTIALS_DIRECTORY']
    assert 'pw-secret' not in seen
    assert 'PATH' in names


@pytest.mark.skipif(os.geteuid() != 0, reason='an interactive run as root writes /run')
def test_the_secrets_a_killed_interactive_run_left_are_removed_by_the_next(world):
    assert run(world, script(world), 'backup').returncode == 0
    # A run killed with SIGKILL left its copy (its shell, PID 999999999, is gone); a live run's copy stays.
    orphan, live = '/run/borg-restore.999999999.killedXX', f'/run/borg-restore.{os.getpid()}.runningX'
    for path in (orphan, live):
        os.mkdir(path, 0o700)
        with open(f'{path}/passphrase', 'w', encoding='utf-8') as handle:
            handle.write('pw-secret')
    try:
        assert run(world, script(world), 'snapshots', unit=False).returncode == 0
        assert not os.path.exists(orphan)
        assert os.path.exists(f'{live}/passphrase')
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='an interactive run as root writes /run')
def test_an_interactive_run_s_secrets_are_named_after_a_live_shell(world):
    # The next run removes the copies of runs whose shell is gone: the shell named in this run's directory must
    # live as long as borg runs, or a second restore started meanwhile removes the passphrase under this one.
    fake = world / 'borg'
    fake.write_text(FAKE_BORG.replace('store="$FAKE_STORE"\n', 'store="$FAKE_STORE"\n'
                                      'owner="${BORG_PASSCOMMAND#cat /run/borg-restore.}"; owner="${owner%%.*}"\n'
                                      'kill -0 "$owner" && echo alive >>"$store/owner" || echo gone >>"$store/owner"\n', 1))
    assert run(world, script(world), 'backup').returncode == 0
    (world / 'store' / 'owner').write_text('')
    assert run(world, script(world), 'snapshots', unit=False).returncode == 0
    assert (world / 'store' / 'owner').read_text() == 'alive\n'


@pytest.mark.skipif(os.geteuid() != 0, reason='newest runs as root')
def test_newest_before_the_first_backup_is_no_archive_yet_not_an_error(world):
    # Right after a converge: the first backup creates the repository, selfhost-backup status says pending.
    result = run(world, script(world), 'newest', unit=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'newest= late_after=93600\n'
    assert result.stderr == ''


@pytest.mark.skipif(os.geteuid() != 0, reason='newest runs as root')
def test_newest_fails_when_a_repository_the_job_has_seen_is_gone(world):
    assert run(world, script(world), 'backup').returncode == 0
    (world / 'store' / 'repo').unlink()
    result = run(world, script(world), 'newest', unit=False)
    assert result.returncode != 0
    assert 'does not exist' in result.stderr and 'cannot list the archives of this instance' in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason='newest runs as root')
def test_newest_fails_on_any_other_error_before_the_first_backup(world):
    (world / 'store' / 'repo').touch()
    result = run(world, script(world, remote=True), 'newest', unit=False,
                 FAKE_LIST_ERROR='Connection closed by remote host. Is borg working on the server?')
    assert result.returncode != 0
    assert 'Connection closed by remote host' in result.stderr


# The restore script's operator commands: dump, exec, snapshots --json.

# A dump no text tool would keep intact: NUL bytes, a byte that is no UTF-8, a line end, no newline at the end.
# Arguments for exec that a shell would mangle anywhere it re-reads them.
UGLY_ARGS = ['info', '--json', """it's "quoted" \\ $HOME `id` %s %% 100%""", '', 'two  words', 'ünïcödé ✓', '-',
             '--', '::app@h1-2026-01-01T00:00:00.000000', '$(touch /tmp/pwned)', 'line\nbreak']
OLDER = 'app@h1-2026-01-01T00:00:00.000000'


def binary_backup(world):
    return job_library.binary_backup(world, lambda **args: script(world, **args), run)


@needs_root
def test_dump_latest_and_by_name_write_the_dump_byte_for_byte(world):
    path = binary_backup(world)
    before = set(os.listdir('/run'))
    latest = run_binary(world, path, 'dump', 'latest')
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout == BINARY_DUMP
    # latest: the newest archive of this instance, then its one item.
    assert [entry[1].split(' --glob-archives')[0] for entry in log(world)[-2:]] == [
        'list --short --last 1', 'extract --stdout ::app@h1-2026-01-02T03:04:05.123456 db.sql']
    by_name = run_binary(world, path, 'dump', OLDER)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == BINARY_DUMP
    assert log(world)[-2][1].startswith('list --short --glob-archives')
    assert last_argv(world)[-4:] == [b'extract', b'--stdout', f'::{OLDER}'.encode(), b'db.sql']
    assert b'pw-secret' not in b' '.join(last_argv(world))
    assert set(os.listdir('/run')) == before  # the secrets' temporary copy is gone


@needs_root
@pytest.mark.parametrize('archive, message', [
    ('app@h1-2025-01-01T00:00:00.000000', "no archive 'app@h1-2025-01-01T00:00:00.000000' of instance app"),
    ('app-2@h1-2026-01-01T00:00:00.000000', "not a valid archive: 'app-2@h1-2026-01-01T00:00:00.000000'"),
])
def test_dump_of_an_archive_that_is_not_this_instance_s_fails_without_extracting(world, archive, message):
    path = binary_backup(world)
    result = run_binary(world, path, 'dump', archive)
    assert result.returncode == 1 and result.stdout == b''
    assert message in result.stderr.decode()
    assert 'extract' not in commands_run(world)


@needs_root
def test_a_failing_extract_fails_the_dump(world):
    path = binary_backup(world)
    # A warning of extract (the dump is not in the archive) fails like an error.
    assert run_binary(world, path, 'dump', 'latest', FAKE_RC_extract='1').returncode == 1
    assert run_binary(world, path, 'dump', 'latest', FAKE_RC_extract='2').returncode == 2


@needs_root
def test_dump_refuses_to_write_to_a_terminal(world):
    assert_the_dump_never_reaches_a_terminal(world, binary_backup(world), lambda: len(log(world)))


@needs_root
@pytest.mark.parametrize('unit, remote', [(False, False), (False, True), (True, True)])
def test_exec_hands_borg_its_arguments_verbatim_and_the_secrets_off_argv(world, unit, remote):
    (world / 'store' / 'repo').touch()
    path = script(world, remote=remote)
    before = set(os.listdir('/run'))
    result = run(world, path, 'exec', '--', *UGLY_ARGS, unit=unit)
    assert result.returncode == 0, result.stderr
    argv = [arg.decode() for arg in last_argv(world)]
    # The instance's global options (--lock-wait), then the arguments exactly as given.
    assert argv == ['--lock-wait', '30', *UGLY_ARGS]
    entry = log(world)[-1]
    # The repository and the secrets reach borg as variables and file paths; none is in argv.
    assert entry[2] == 'pw=pw-secret' and entry[4] == ('repo=ssh://borg@h/srv/app' if remote else 'repo=/srv/app')
    assert entry[6] == f'base={world}/cache' and entry[3] == 'codes=legacy'
    if remote:
        assert '-i ' in entry[5] and 'UserKnownHostsFile=' in entry[5] and 'KEY' not in entry[5]
    raw = (world / 'store' / 'argv').read_bytes()
    for secret in (b'pw-secret', b'KEY', b'ssh-ed25519'):
        assert secret not in raw
    assert set(os.listdir('/run')) == before


@needs_root
def test_exec_passes_borg_s_exit_status_and_output_on(world):
    (world / 'store' / 'repo').touch()
    path = script(world)
    listed = run(world, path, 'exec', '--', 'list', unit=False)
    assert listed.returncode == 0 and OLDER in listed.stdout
    assert run(world, path, 'exec', '--', 'check', unit=False, FAKE_RC_check='1').returncode == 1
    assert run(world, path, 'exec', '--', 'check', unit=False, FAKE_RC_check='2').returncode == 2


@needs_root
def test_exec_runs_borg_as_the_request_s_user(job_library):
    """As root, for an instance of user nobody: borg runs as nobody, with the passphrase that root copied for it."""
    with world_for_another_user(job_library, 'borg', FAKE_BORG, {'passphrase': 'pw-secret'}) as base:
        (base / 'store' / 'repo').touch()
        commands = _borg.Commands(
            binary=str(base / 'borg'), version=(1, 4, 0), instance='app', host='h1', backup_name='db.sql',
            repository='/srv/app', cache_dir=str(base / 'cache'), encryption='repokey-blake2', compression='zstd,3')
        exec_as_nobody(base, 'borg', _borg.shell_data(commands), 'info',
                       snapshot_pattern=_borg.archive_pattern('app', 'h1'), snapshot_word='archive')
        assert (base / 'store' / 'log').read_text().startswith('info|info|pw=pw-secret|codes=legacy|repo=/srv/app|')


@needs_root
@pytest.mark.parametrize('unit', [False, True])
def test_snapshots_json_is_one_json_list_with_id_time_host_and_size(world, unit):
    (world / 'store' / 'repo').touch()
    # borg gives the host's local time without an offset: the listing adds the host's (here UTC+2).
    result = run(world, script(world), 'snapshots', '--json', unit=unit, TZ='UTC-2')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {'id': OLDER, 'time': '2026-01-01T00:00:00+02:00', 'host': 'h1', 'size': None},
        {'id': 'app@h1-2026-01-02T03:04:05.123456', 'time': '2026-01-02T03:04:05.123456+02:00', 'host': 'h1',
         'size': None}]
    assert log(world)[-1][1] == f"list --json --format {{hostname}} --glob-archives {_borg.archive_glob('app', 'h1')}"


@needs_root
def test_snapshots_json_fails_when_borg_fails(world):
    (world / 'store' / 'repo').touch()
    result = run(world, script(world), 'snapshots', '--json', unit=False, FAKE_LIST_ERROR='Repository is locked')
    assert result.returncode != 0
    assert 'Repository is locked' in result.stderr


LATEST = 'app@h1-2026-01-02T03:04:05.123456'


def drill_script(world, expected='dump-data'):
    return script(world, drill_cmd=f'cat >{world}/drilled && test "$(cat {world}/drilled)" = {expected}')


def test_a_drill_of_latest_resolves_the_archive_sizes_and_streams_it(world):
    path = drill_script(world)
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest')
    assert result.returncode == 0, result.stderr
    assert (world / 'drilled').read_text() == 'dump-data'
    assert f'drill of archive latest ({LATEST}) of instance app: 9 bytes into drill_cmd (' in result.stderr
    calls = [entry[1] for entry in log(world)]
    # latest resolved once, then the size of the one item and its extract, both of that archive.
    assert [call for call in calls if '--last 1' in call] == [calls[-3]]
    assert calls[-2:] == [f'list --format {{size}}{{NL}} ::{LATEST} db.sql', f'extract --stdout ::{LATEST} db.sql']
    assert not (world / 'restored').exists()


def test_a_drill_of_latest_lists_the_archives_no_more_than_needed_and_without_a_repository_fails_clearly(world):
    # latest is this instance's newest by the tool's own selection: no separate listing before the drill starts
    # (the drill's time is the restore time). Without a repository yet, the listing says so and nothing runs.
    path = drill_script(world)
    empty = run(world, path, 'drill', 'latest')
    assert empty.returncode == 1
    assert empty.stderr.endswith('borg-restore-app: cannot list the archives of this instance\n'), empty.stderr
    assert not (world / 'drilled').exists()
    assert run(world, path, 'backup').returncode == 0
    before = len(log(world))
    assert run(world, path, 'drill', 'latest').returncode == 0
    calls = [entry[1] for entry in log(world)[before:]]
    # latest resolved once (borg list --last 1), the size and the extract of that archive: three runs, not four.
    assert [call.split()[0] + (' --last 1' if '--last 1' in call else '') for call in calls] == \
        ['list --last 1', 'list', 'extract'], calls
    assert calls[1].endswith(f'::{LATEST} db.sql') and calls[2] == f'extract --stdout ::{LATEST} db.sql'


@pytest.mark.skipif(os.geteuid() != 0, reason='a drill by hand runs as root')
def test_a_drill_by_hand_of_one_archive(world):
    path = drill_script(world)
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', LATEST, unit=False)
    assert result.returncode == 0, result.stderr
    assert log(world)[-1][1] == f'extract --stdout ::{LATEST} db.sql'


def test_a_failing_drill_and_a_missing_archive_fail_clearly(world):
    path = drill_script(world, expected='other-rows')
    assert run(world, path, 'backup').returncode == 0
    failed = run(world, path, 'drill', 'latest')
    assert failed.returncode == 1 and 'drill failed: drill_cmd exited 1' in failed.stderr
    before = len(log(world))
    missing = run(world, path, 'drill', 'app@h1-2025-01-01T00:00:00.000000')
    assert missing.returncode == 1
    assert ("no archive 'app@h1-2025-01-01T00:00:00.000000' of instance app (see 'borg-restore-app snapshots'): "
            'nothing was drilled') in missing.stderr
    assert [entry[0] for entry in log(world)[before:]] == ['list']


def test_a_drill_of_latest_in_an_empty_repository_says_there_is_none_and_extracts_nothing(world):
    path = drill_script(world)
    assert run(world, path, 'backup').returncode == 0
    (world / 'store' / 'data').unlink()   # the repository is there, its one archive gone
    before = len(log(world))
    result = run(world, path, 'drill', 'latest')
    assert result.returncode == 1
    assert ("no archive 'latest' of instance app (see 'borg-restore-app snapshots'): nothing was drilled"
            in result.stderr), result.stderr
    assert commands_run(world)[before:] == ['list'] and not (world / 'drilled').exists()


def test_a_drill_whose_extract_fails_fails(world):
    path = script(world, drill_cmd=f'cat >{world}/drilled')
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest', FAKE_RC_extract='2')
    assert result.returncode == 1
    assert ("drill failed: the dump of archive 'latest' could not be read to its end (borg exit 2), although drill_cmd "
            'accepted what it got') in result.stderr
