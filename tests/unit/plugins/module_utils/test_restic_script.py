# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rendered restic job script run by bash against a fake restic: failed dumps, restores, secrets."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import job_library
from job_library import (BINARY_DUMP, assert_the_dump_never_reaches_a_terminal, exec_as_nobody, last_argv,
                         make_world, needs_root, run_binary, world_for_another_user)

from ansible_collections.selfhost.backup.plugins.module_utils import _job_script, _layout, _monitoring, _restic

FAKE_RESTIC = r'''#!/bin/bash
# Records its arguments and the secrets it got, keeps the last stdin as "the repository".
store="$FAKE_STORE"
pw="${RESTIC_PASSWORD_FILE:+$(cat "$RESTIC_PASSWORD_FILE")}"
[ -n "$pw" ] || { [ -t 0 ] || read -r pw; }
args="$*"; printf '%s|pw=%s|repo=%s\n' "${args//$'\n'/ }" "$pw" "${RESTIC_REPOSITORY:-}" >>"$store/log"
printf '%s\0' "$@" >"$store/argv"   # the last call's arguments, exactly
id -un >"$store/user"
args=" $* "
case "$args" in
  *" backup "*"--stdin-from-command"*)
    cmd=("${@}"); while [ "${cmd[0]}" != -- ]; do cmd=("${cmd[@]:1}"); done; cmd=("${cmd[@]:1}")
    [ -z "${FAKE_STDERR:-}" ] || printf '%s\n' "$FAKE_STDERR" >&2
    if [ -n "${FAKE_REFUSE:-}" ]; then
      # Like restic 0.17 and 0.18 when the repository refuses a pack (a full disk): it stops reading the dump,
      # reports the failed save and waits for the dump to end, for ever if the dump has more to write. SIGTERM
      # kills the dump and ends restic with its error.
      exec 3< <("${cmd[@]}")
      dump=$!
      trap 'kill "$dump"; echo "Fatal: unable to save snapshot: no space left on device" >&2; exit 1' TERM
      head -c 100 <&3 >/dev/null
      echo "Save(<data/0123abcd45>) failed: write /srv/repo/data/01/0123abcd45-tmp: no space left on device" >&2
      while kill -0 "$dump" 2>/dev/null; do sleep 0.1; done
      exit 1
    fi
    "${cmd[@]}" >"$store/incoming" || { echo "Fatal: subprocess ${cmd[0]} returned error" >&2; exit 1; }
    if [ ! -s "$store/incoming" ]; then
      # Like restic 0.17+: an empty dump still saves a snapshot, then exits 3.
      printf '{"message_type":"summary","total_bytes_processed":0,"snapshot_id":"4444dddd4444dddd"}\n'; exit 3
    fi
    mv "$store/incoming" "$store/data"
    printf '{"message_type":"summary","data_added":4242,"data_added_packed":1234,"total_bytes_processed":%s,"snapshot_id":"1111aaaa1111aaaa"}\n' \
      "$(wc -c <"$store/data")" ;;
  *" forget "*)
    # FAKE_FORGET_FAILURES: how many forgets fail first (another job holding the lock).
    failures="$(cat "$store/forget-failures" 2>/dev/null || echo "${FAKE_FORGET_FAILURES:-0}")"
    if [ "$failures" -gt 0 ]; then echo $((failures - 1)) >"$store/forget-failures"; echo "repository is already locked" >&2; exit 1; fi ;;
  *" backup "*"--stdin "*)
    # Like restic 0.14: whatever arrived, an empty stdin too, is saved.
    cat >"$store/data"
    printf '{"message_type":"summary","data_added":4242,"total_bytes_processed":%s,"snapshot_id":"2222bbbb2222bbbb"}\n' \
      "$(wc -c <"$store/data")" ;;
  *" dump "*)
    # FAKE_DUMP_CUT: the repository fails after that many bytes (a pack that cannot be read).
    if [ -n "${FAKE_DUMP_CUT:-}" ]; then head -c "$FAKE_DUMP_CUT" "$store/data"; echo "Fatal: pack 0123abcd: unexpected EOF" >&2; exit 1; fi
    # FAKE_DUMP_DELAY: the repository is slow to send the first byte (a remote one, a large index to load).
    [ -z "${FAKE_DUMP_DELAY:-}" ] || { sleep "$FAKE_DUMP_DELAY"; echo "first byte sent" >>"$store/order"; }
    # A reader that left makes cat (and restic, which writes its stdout) die of SIGPIPE: its status is restic's.
    cat "$store/data" || exit "$?" ;;
  *" ls --json "*)
    printf '{"time":"2026-01-01T00:00:00Z","id":"1111aaaa","struct_type":"snapshot"}\n'
    printf '{"name":"db.sql","type":"file","path":"/db.sql","uid":0,"size":%s,"struct_type":"node"}\n' "$(wc -c <"$store/data")" ;;
  *" unlock "*) [ -z "${FAKE_UNLOCK_FAILS:-}" ] || { echo "unlock: repository unreachable" >&2; exit 1; } ;;
  *" snapshots --json "*)
    printf '[{"time":"2026-01-01T00:00:00.123456789+01:00","tree":"ab","paths":["/db.sql"],"hostname":"h1",'
    printf '"username":"root","tags":["selfhost-backup:app"],"summary":{"total_bytes_processed":9,"data_added":4},'
    printf '"id":"1111aaaa%s","short_id":"1111aaaa"}]\n' "$(printf '0%.0s' $(seq 56))" ;;
  *" snapshots "*) echo "1111aaaa  2026-01-01 00:00:00  host  tag  /db.sql" ;;
  *) ;;
esac
exit "${FAKE_RC:-0}"
'''


@pytest.fixture
def world(tmp_path, job_library):
    make_world(tmp_path, job_library, 'restic', FAKE_RESTIC,
               {'passphrase': 'pw-secret', 'env.RESTIC_REPOSITORY': '/srv/repo'})
    # The units' CacheDirectory=, which systemd creates before the job runs.
    (tmp_path / 'cache').mkdir()
    return tmp_path


def script(world, version, backup_cmd='printf dump-data', restore_cmd=None, stop_units=(), metrics_file='', drill_cmd='',
           lock_wait=300, **extra):
    commands = _restic.Commands(binary=str(world / 'restic'), version=version, instance='app', backup_name='db.sql',
                                host='h1', retention=tuple(_restic.forget_args('app', 'h1', {'keep_last': 2})))
    spec = _job_script.ScriptSpec(
        layout=_layout.Layout('restic', 'app'), user=getpass.getuser(), backup_name='db.sql', backup_cmd=backup_cmd,
        restore_cmd=restore_cmd or f'cat > {world}/restored',
        credentials={'passphrase': str(world / 'creds' / 'passphrase'),
                     'env.RESTIC_REPOSITORY': str(world / 'creds' / 'env.RESTIC_REPOSITORY')},
        env_names=('RESTIC_REPOSITORY',), stop_units=stop_units, provider_data=_restic.shell_data(commands), library=str(world / 'lib'),
        monitoring=_monitoring.Monitoring(metrics_file=metrics_file), drill_cmd=drill_cmd, lock_wait=lock_wait,
        **extra,
    )
    path = world / 'job'
    path.write_text(_job_script.render_script(spec))
    return path


def run(world, path, *args, unit=True, **extra_env):
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), 'SELFHOST_BACKUP_FORGET_RETRY_SECONDS': '0',
           **extra_env}
    if unit:
        env.update(CREDENTIALS_DIRECTORY=str(world / 'creds'), CACHE_DIRECTORY=str(world / 'cache'))
    else:
        # By hand the job's cache is /var/cache/<job>: the test's own instead, which the instance lock makes.
        env.setdefault('CACHE_DIRECTORY', str(world / 'hand-cache'))
    return subprocess.run(['bash', str(path)] + list(args), capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def log(world):
    return (world / 'store' / 'log').read_text().splitlines()


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_backup_then_restore_round_trip(world, version):
    path = script(world, version)
    result = run(world, path, 'backup')
    assert result.returncode == 0, result.stderr
    backup_line = next(line for line in log(world) if ' backup ' in f' {line}')
    assert '--tag selfhost-backup:app' in backup_line and '--cache-dir' in backup_line
    assert backup_line.endswith('|pw=pw-secret|repo=/srv/repo')
    assert any(' forget --tag selfhost-backup:app' in line and '--prune' in line for line in log(world))
    if os.geteuid() == 0:
        # Interactively: root reads the secret files, restic gets the passphrase on stdin, not in argv.
        restored = run(world, path, 'restore', 'latest', unit=False)
        assert restored.returncode == 0, restored.stderr
        assert (world / 'restored').read_text() == 'dump-data'
        dump_line = next(line for line in log(world) if ' dump ' in line)
        assert f'--cache-dir {world / "hand-cache"}' in dump_line and '--quiet dump --tag selfhost-backup:app --host h1 --path /db.sql latest' in dump_line
        assert dump_line.endswith('|pw=pw-secret|repo=/srv/repo')
        assert 'pw-secret' not in dump_line.split('|')[0]


def test_legacy_failed_dump_forgets_its_snapshot(world):
    path = script(world, (0, 14, 0), backup_cmd='printf partial; exit 3')
    result = run(world, path, 'backup')
    assert result.returncode != 0
    assert 'backup_cmd exit 3' in result.stderr
    assert any(' forget 2222bbbb2222bbbb|' in line for line in log(world))
    assert not any('--prune' in line for line in log(world))


def test_modern_failed_dump_fails_without_snapshot(world):
    path = script(world, (0, 18, 0), backup_cmd='printf partial; exit 3')
    result = run(world, path, 'backup')
    assert result.returncode != 0
    # restic only says its command failed: the script names backup_cmd's own status.
    assert 'backup failed (backup_cmd exit 3, restic exit 1): no snapshot kept' in result.stderr
    assert not (world / 'store' / 'data').exists()
    assert not any(' forget ' in line for line in log(world))


def run_bounded(world, path, seconds, **extra_env):
    """run(), but a job that hangs is killed with everything it started and fails the test."""
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), 'SELFHOST_BACKUP_FORGET_RETRY_SECONDS': '0',
           'CREDENTIALS_DIRECTORY': str(world / 'creds'), 'CACHE_DIRECTORY': str(world / 'cache'), **extra_env}
    with subprocess.Popen(['bash', str(path), 'backup'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, stdin=subprocess.DEVNULL, start_new_session=True) as job:
        try:
            stdout, stderr = job.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
            pytest.fail(f'the backup still ran after {seconds} s')
    return subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)


def test_a_repository_that_refuses_the_dump_ends_the_backup_instead_of_hanging(world):
    # An endless dump: restic stops reading it after the failed save and would wait for it for ever.
    path = script(world, (0, 18, 0), backup_cmd='yes dump-data')
    started = time.monotonic()
    result = run_bounded(world, path, 30, FAKE_REFUSE='1')
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    # restic's own messages reach the journal, then why it was stopped, then its error and the verdict.
    assert 'Save(<data/0123abcd45>) failed: write /srv/repo/data/01/0123abcd45-tmp: no space left on device' in result.stderr
    assert 'the repository refused the backup: stopping restic' in result.stderr
    assert 'Fatal: unable to save snapshot: no space left on device' in result.stderr
    assert ('backup failed (backup_cmd left no exit status (it did not run, or its shell was killed), restic exit 1): '
            'no snapshot kept') in result.stderr
    assert not (world / 'store' / 'data').exists()
    assert marks(world) == ['restic-unfinished.backup']


@pytest.mark.parametrize('message', [
    # restic retries: the save may still succeed.
    'Save(<data/0123abcd45>) returned error, retrying after 720ms: connection refused',
    # The dump's own stderr, which restic passes on with a prefix: never taken for restic's verdict.
    'subprocess /bin/sh: Save(<data/0123abcd45>) failed: not restic',
])
def test_other_messages_pass_through_and_stop_nothing(world, message):
    result = run_bounded(world, script(world, (0, 18, 0)), 30, FAKE_STDERR=message)
    assert result.returncode == 0, result.stderr
    assert message in result.stderr and 'stopping restic' not in result.stderr
    assert (world / 'store' / 'data').read_text() == 'dump-data'


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_failed_restore_command_fails_the_script(world):
    path = script(world, (0, 18, 0), restore_cmd='cat >/dev/null; exit 4')
    assert run(world, path, 'backup').returncode == 0
    assert run(world, path, 'restore', 'latest', unit=False).returncode != 0
    assert run(world, path, 'restore', 'not-an-id', unit=False).returncode != 0


def test_backup_only_inside_the_unit(world):
    result = run(world, script(world, (0, 18, 0)), 'backup', unit=False)
    assert result.returncode != 0 and 'systemctl start --wait restic-backup-app.service' in result.stderr


def test_snapshots_lists_the_instance(world):
    result = run(world, script(world, (0, 18, 0)), 'snapshots')
    assert result.returncode == 0 and '1111aaaa' in result.stdout
    assert 'snapshots --tag selfhost-backup:app' in log(world)[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_restore_by_id_only_of_this_instance(world):
    path = script(world, (0, 18, 0))
    assert run(world, path, 'backup').returncode == 0
    own = run(world, path, 'restore', '1111aaaa', unit=False)
    assert own.returncode == 0, own.stderr
    assert (world / 'restored').read_text() == 'dump-data'
    assert any('snapshots --json --tag selfhost-backup:app' in line for line in log(world))
    (world / 'restored').unlink()
    # A well-formed id that is not among this instance's snapshots (another instance's, say): the
    # restore command never starts, so the database is untouched.
    other = run(world, path, 'restore', '3333cccc', unit=False)
    assert other.returncode != 0
    assert "no snapshot '3333cccc' of instance app" in other.stderr
    assert not (world / 'restored').exists()
    assert not any(' dump 3333cccc' in line for line in log(world))


@pytest.mark.parametrize('version, snapshot, restic_rc', [((0, 18, 0), '4444dddd4444dddd', 3),
                                                          ((0, 14, 0), '2222bbbb2222bbbb', 0)])
def test_an_empty_dump_fails_and_forgets_the_snapshot_restic_saved(world, version, snapshot, restic_rc):
    path = script(world, version, backup_cmd='true')
    result = run(world, path, 'backup')
    assert result.returncode != 0
    assert (f'backup failed: backup_cmd exited 0 but wrote nothing (an empty dump is no backup; restic exit '
            f'{restic_rc}): no snapshot kept') in result.stderr
    assert any(f' forget {snapshot}|' in line for line in log(world))
    assert not any('--prune' in line for line in log(world))


def test_a_tool_that_fails_before_the_dump_says_backup_cmd_left_no_status(world):
    path = script(world, (0, 18, 0))
    # The fake's "repository" is a directory it cannot write: it fails before it runs the command.
    result = run(world, path, 'backup', FAKE_STORE=str(world / 'missing'))
    assert result.returncode != 0
    assert 'backup failed (backup_cmd left no exit status (it did not run, or its shell was killed), restic exit 1)' in result.stderr


def test_forget_of_a_failed_snapshot_waits_for_the_lock(world):
    path = script(world, (0, 14, 0), backup_cmd='printf partial; exit 3')
    result = run(world, path, 'backup', FAKE_FORGET_FAILURES='2')
    assert result.returncode != 0
    assert result.stderr.count('forget failed (try') == 2
    assert sum(' forget 2222bbbb2222bbbb|' in line for line in log(world)) == 3


def test_forget_that_never_succeeds_says_so(world):
    path = script(world, (0, 14, 0), backup_cmd='printf partial; exit 3')
    result = run(world, path, 'backup', FAKE_FORGET_FAILURES='99')
    assert result.returncode != 0
    assert 'could not forget snapshot 2222bbbb2222bbbb' in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_restore_restarts_only_the_units_it_stopped(world):
    path = script(world, (0, 18, 0), stop_units=('running.service', 'idle.service'))
    assert run(world, path, 'backup').returncode == 0
    restored = run(world, path, 'restore', 'latest', unit=False, PATH=fake_systemctl(world))
    assert restored.returncode == 0, restored.stderr
    calls = systemctl_calls(world)
    # '--' first: a unit name can never read as an option of systemctl.
    assert 'stop -- running.service' in calls and 'start -- running.service' in calls
    assert 'stop -- idle.service' not in calls and 'start -- idle.service' not in calls


def fake_systemctl(world):
    """A systemctl on PATH for which running.service is active and idle.service is not; calls are recorded."""
    fake = world / 'bin' / 'systemctl'
    fake.parent.mkdir()
    fake.write_text('#!/bin/bash\nif [ "$1" = start ]; then sleep "${FAKE_START_DELAY:-0}"; fi\n'
                    'echo "$*" >>"$FAKE_STORE/systemctl"\necho "$*" >>"$FAKE_STORE/order"\n'
                    'if [ "$1" = is-active ]; then [ "${!#}" = running.service ]; fi\n')
    fake.chmod(0o755)
    return f"{fake.parent}:{os.environ['PATH']}"


def systemctl_calls(world):
    calls = world / 'store' / 'systemctl'
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_restore_latest_without_a_snapshot_stops_nothing_and_restores_nothing(world):
    path = script(world, (0, 18, 0), stop_units=('running.service',))
    result = run(world, path, 'restore', 'latest', unit=False, PATH=fake_systemctl(world))
    assert result.returncode != 0
    assert "no snapshot 'latest' of instance app could be read: nothing was stopped or restored" in result.stderr
    assert not (world / 'restored').exists()
    assert systemctl_calls(world) == []
    # One repository access: the dump of latest, scoped to this instance; no listing before it.
    assert [step.split(' --quiet ')[-1].split()[0] for step in steps_run(world)] == ['dump']


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_restore_waits_for_a_slow_first_byte_before_it_stops_anything(world):
    path = script(world, (0, 18, 0), stop_units=('running.service',))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'restore', 'latest', unit=False, PATH=fake_systemctl(world), FAKE_DUMP_DELAY='1.5')
    assert result.returncode == 0, result.stderr
    order = (world / 'store' / 'order').read_text().splitlines()
    assert order.index('first byte sent') < order.index('stop -- running.service') < order.index('start -- running.service')
    # The restore command read the dump from its first byte: nothing was taken off it by the wait.
    assert (world / 'restored').read_text() == 'dump-data'


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_restore_whose_dump_ends_late_without_data_stops_nothing(world):
    path = script(world, (0, 18, 0), stop_units=('running.service',))
    result = run(world, path, 'restore', 'latest', unit=False, PATH=fake_systemctl(world), FAKE_DUMP_DELAY='0.5')
    assert result.returncode != 0
    assert "no snapshot 'latest' of instance app could be read: nothing was stopped or restored" in result.stderr
    assert systemctl_calls(world) == []
    assert not (world / 'restored').exists()


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_restore_whose_wait_for_the_dump_fails_says_so_not_that_there_is_no_snapshot(world):
    """The wait cannot run (its file not installed yet, mid-converge): the snapshot is there, and the message must
    not send the operator to look for it; nothing stops either way."""
    path = script(world, (0, 18, 0), stop_units=('running.service',))
    assert run(world, path, 'backup').returncode == 0
    library = job_library.make_library()
    try:
        os.remove(os.path.join(library, 'dump_arrived.py'))
        (world / 'lib').unlink()
        (world / 'lib').symlink_to(library)
        result = run(world, path, 'restore', 'latest', unit=False, PATH=fake_systemctl(world))
    finally:
        shutil.rmtree(library)
    assert result.returncode != 0
    assert "cannot tell whether the dump of snapshot 'latest' arrived" in result.stderr
    assert 'could be read' not in result.stderr
    assert systemctl_calls(world) == []
    assert not (world / 'restored').exists()


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_a_failing_restore_command_fails_and_starts_the_stopped_units_again(world):
    path = script(world, (0, 18, 0), restore_cmd='head -c 3 >/dev/null; exit 4', stop_units=('running.service',))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'restore', 'latest', unit=False, PATH=fake_systemctl(world))
    assert result.returncode != 0
    assert 'restored latest' not in result.stderr
    assert systemctl_calls(world) == ['is-active --quiet -- running.service', 'stop -- running.service',
                                      'start -- running.service']


@pytest.mark.skipif(os.geteuid() != 0, reason='the restore runs as root')
def test_a_restore_by_hand_uses_the_units_cache_once_it_exists(world):
    path = script(world, (0, 18, 0))
    assert run(world, path, 'backup').returncode == 0
    # The units' cache (here world/cache, named by CACHE_DIRECTORY for the test) exists: restic reads its index there.
    restored = run(world, path, 'restore', 'latest', unit=False, CACHE_DIRECTORY=str(world / 'cache'))
    assert restored.returncode == 0, restored.stderr
    assert f"--cache-dir {world / 'cache'} --quiet dump" in steps_run(world)[-1]
    assert (world / 'restored').read_text() == 'dump-data'
    # No cache yet (no unit ran on this host): the instance lock makes it as systemd would, the request's user's
    # and private, and restic uses it.
    restored = run(world, path, 'restore', 'latest', unit=False, CACHE_DIRECTORY=str(world / 'no-cache-yet'))
    assert restored.returncode == 0, restored.stderr
    assert f"--cache-dir {world / 'no-cache-yet'} --quiet dump" in steps_run(world)[-1]
    made = os.stat(world / 'no-cache-yet')
    assert (made.st_uid, oct(made.st_mode & 0o7777)) == (os.getuid(), '0o700')


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_backup_leaves_bytes_added_and_snapshot_count_for_the_metrics(world, version):
    path = script(world, version, metrics_file=str(world / 'app.prom'))
    result = run(world, path, 'backup')
    assert result.returncode == 0, result.stderr
    # data_added of restic's summary (not data_added_packed), and the instance's snapshots as listed.
    assert (world / 'cache' / 'last-backup').read_text() == 'added_bytes=4242\nsnapshots=1\n'
    # The journal gets one readable line; restic's summary goes to the cache directory.
    assert '"message_type"' not in result.stdout + result.stderr
    snapshot = '1111aaaa' if version >= (0, 17, 0) else '2222bbbb'
    assert re.search(rf'^restic-restore-app: backup of instance app: snapshot {snapshot}, 9 B read, 4.2KiB added, \d+s$',
                     result.stdout, re.M), result.stdout
    stats = json.loads((world / 'cache' / 'last-backup.json').read_text())
    assert stats['message_type'] == 'summary' and stats['data_added'] == 4242


def test_a_failed_backup_leaves_no_figures(world):
    path = script(world, (0, 18, 0), backup_cmd='exit 3', metrics_file=str(world / 'app.prom'))
    assert run(world, path, 'backup').returncode != 0
    assert not (world / 'cache' / 'last-backup').exists()


def steps_run(world):
    return [line.split('|')[0] for line in log(world)]


def marks(world):
    return sorted(path.name for path in (world / 'cache').glob('restic-unfinished.*'))


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_a_good_run_leaves_no_mark_and_the_next_one_does_not_unlock(world, version):
    path = script(world, version)
    for dummy in range(2):
        result = run(world, path, 'backup')
        assert result.returncode == 0, result.stderr
        assert marks(world) == []
    assert not any(' unlock' in f' {step}' for step in steps_run(world))


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_after_a_failed_run_stale_locks_are_removed_before_the_backup(world, version):
    assert run(world, script(world, version, backup_cmd='printf partial; exit 3'), 'backup').returncode != 0
    assert marks(world) == ['restic-unfinished.backup']
    result = run(world, script(world, version), 'backup')
    assert result.returncode == 0, result.stderr
    steps = steps_run(world)
    unlock = next(index for index, step in enumerate(steps) if ' unlock' in f' {step}')
    backup = max(index for index, step in enumerate(steps) if ' backup ' in f' {step}')
    assert unlock < backup
    # Only stale locks: never --remove-all, which would break a live run's lock.
    assert '--remove-all' not in steps[unlock]
    assert marks(world) == []


def test_a_killed_run_s_mark_makes_the_check_unlock_too(world):
    # What a kill -9 of the whole unit leaves: the mark of the backup step, nothing else.
    (world / 'cache' / 'restic-unfinished.backup').touch()
    commands = _restic.Commands(binary=str(world / 'restic'), version=(0, 18, 0), instance='app',
                                backup_name='db.sql', host='h1', check=('check',))
    spec = _job_script.ScriptSpec(
        layout=_layout.Layout('restic', 'app'), user=getpass.getuser(), backup_name='db.sql', backup_cmd='true',
        restore_cmd='cat', credentials={'passphrase': str(world / 'creds' / 'passphrase')}, env_names=(),
        stop_units=(), provider_data=_restic.shell_data(commands), library=str(world / 'lib'), maintenance=('backup', 'check'))
    path = world / 'job'
    path.write_text(_job_script.render_script(spec))
    result = run(world, path, 'check')
    assert result.returncode == 0, result.stderr
    assert [step.split()[-1] for step in steps_run(world)] == ['unlock', 'check']
    assert marks(world) == []


@pytest.mark.parametrize('check_running, kept', [(True, ['restic-unfinished.check']), (False, [])])
def test_the_mark_of_a_step_running_beside_stays(world, check_running, kept):
    # Both marks are there: the check job runs right now (its mark stays: a later failure of it must still
    # be seen), or it was killed (its mark goes with the stale locks the unlock removed).
    (world / 'cache' / 'restic-unfinished.backup').touch()
    (world / 'cache' / 'restic-unfinished.check').touch()
    bin_dir = world / 'bin'
    bin_dir.mkdir()
    fake = bin_dir / 'systemctl'
    fake.write_text('#!/bin/bash\necho "$*" >>"$FAKE_STORE/systemctl"\necho "$*" >>"$FAKE_STORE/order"\n'
                    f'[ "$1 $2 $3" = "is-active --quiet restic-backup-app-check.service" ] && {str(check_running).lower()}\n')
    fake.chmod(0o755)
    result = run(world, script(world, (0, 18, 0)), 'backup', PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    assert any(step.endswith(' unlock') for step in steps_run(world))
    assert marks(world) == kept
    assert (world / 'store' / 'systemctl').read_text() == 'is-active --quiet restic-backup-app-check.service\n'


def test_a_failing_unlock_does_not_stop_the_backup_and_is_tried_again(world):
    (world / 'cache' / 'restic-unfinished.backup').touch()
    result = run(world, script(world, (0, 18, 0)), 'backup', FAKE_UNLOCK_FAILS='1')
    assert result.returncode == 0, result.stderr
    assert 'could not remove stale locks' in result.stderr
    assert (world / 'store' / 'data').read_text() == 'dump-data'
    # The backup's own mark is gone, the one the unlock could not clear is not: the next run unlocks again.
    assert marks(world) == []
    (world / 'cache' / 'restic-unfinished.check').touch()
    assert run(world, script(world, (0, 18, 0)), 'backup', FAKE_UNLOCK_FAILS='1').returncode == 0
    assert marks(world) == ['restic-unfinished.check']


def backup_with_a_cloud_secret(world, version, backup_cmd):
    """A backup of an instance with a secret environment variable besides the repository, as a unit runs it."""
    (world / 'creds' / 'env.AWS_SECRET_ACCESS_KEY').write_text('aws-secret-value')
    commands = _restic.Commands(binary=str(world / 'restic'), version=version, instance='app', backup_name='db.sql',
                                host='h1')
    spec = _job_script.ScriptSpec(
        layout=_layout.Layout('restic', 'app'), user=getpass.getuser(), backup_name='db.sql',
        backup_cmd=backup_cmd, restore_cmd='cat >/dev/null',
        credentials={'passphrase': str(world / 'creds' / 'passphrase'),
                     'env.RESTIC_REPOSITORY': str(world / 'creds' / 'env.RESTIC_REPOSITORY'),
                     'env.AWS_SECRET_ACCESS_KEY': str(world / 'creds' / 'env.AWS_SECRET_ACCESS_KEY')},
        env_names=('AWS_SECRET_ACCESS_KEY', 'RESTIC_REPOSITORY'), stop_units=(),
        provider_data=_restic.shell_data(commands), library=str(world / 'lib'))
    path = world / 'job'
    path.write_text(_job_script.render_script(spec))
    return run(world, path, 'backup')


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_backup_cmd_sees_no_secret_and_no_restic_variable(world, version):
    result = backup_with_a_cloud_secret(world, version, f'env > {world}/dump-env; printf dump-data')
    assert result.returncode == 0, result.stderr
    assert (world / 'store' / 'data').read_text() == 'dump-data'
    seen = (world / 'dump-env').read_text()
    for hidden in ('aws-secret-value', '/srv/repo', 'AWS_SECRET_ACCESS_KEY=', 'CREDENTIALS_DIRECTORY='):
        assert hidden not in seen
    assert not [line for line in seen.splitlines() if line.startswith('RESTIC_')]
    # The rest of the job's environment stays: the dump needs PATH (and the unit's CACHE_DIRECTORY is harmless).
    assert 'PATH=' in seen


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_the_dump_s_wrapper_holds_no_secret_in_its_environment(world, version):
    """/proc/<pid>/environ shows what a process was started with, whatever its shell unsets later. The wrapper
    that runs backup_cmd and records its exit status (RUN_BACKUP_CMD) lives as long as the dump: restic >= 0.17
    starts it with restic's whole environment, which the request's user must not find there."""
    # $PPID of backup_cmd's shell: the wrapper, while it waits for the dump.
    result = backup_with_a_cloud_secret(
        world, version, f'tr "\\0" "\\n" < /proc/$PPID/environ > {world}/wrapper-env; printf dump-data')
    assert result.returncode == 0, result.stderr
    assert (world / 'store' / 'data').read_text() == 'dump-data'
    seen = (world / 'wrapper-env').read_text()
    assert 'PATH=' in seen, seen
    for hidden in ('aws-secret-value', '/srv/repo', 'pw-secret', 'CREDENTIALS_DIRECTORY='):
        assert hidden not in seen, hidden
    assert not [line for line in seen.splitlines() if line.startswith('RESTIC_')], seen


# The restore script's operator commands: dump, exec, snapshots --json.

# A dump no text tool would keep intact: NUL bytes, a byte that is no UTF-8, a line end, no newline at the end.
# Arguments for exec that a shell would mangle anywhere it re-reads them.
UGLY_ARGS = ['stats', '--mode', 'raw-data', """it's "quoted" \\ $HOME `id` %s %% 100%""", '', 'two  words',
             'ünïcödé ✓', '-', '--', '--json', '$(touch /tmp/pwned)', 'line\nbreak']


def binary_backup(world):
    return job_library.binary_backup(world, lambda **args: script(world, (0, 18, 0), **args), run)


@needs_root
def test_dump_latest_and_by_id_write_the_dump_byte_for_byte(world):
    path = binary_backup(world)
    latest = run_binary(world, path, 'dump', 'latest')
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout == BINARY_DUMP
    assert '--quiet dump --tag selfhost-backup:app --host h1 --path /db.sql latest /db.sql|pw=pw-secret' in log(world)[-1]
    by_id = run_binary(world, path, 'dump', '1111aaaa')
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout == BINARY_DUMP
    # The id is checked against this instance's snapshots first, then dumped; the passphrase on stdin only.
    assert 'snapshots --json --tag selfhost-backup:app --host h1' in log(world)[-2]
    assert last_argv(world)[-4:] == [b'--quiet', b'dump', b'1111aaaa', b'/db.sql']
    assert b'pw-secret' not in b' '.join(last_argv(world))


@needs_root
def test_dump_of_an_id_that_is_not_this_instance_s_fails_without_dumping(world):
    path = binary_backup(world)
    for snapshot, message in (('3333cccc', "no snapshot '3333cccc' of instance app"),
                              ('not-an-id', "not a valid snapshot: 'not-an-id'")):
        result = run_binary(world, path, 'dump', snapshot)
        assert result.returncode == 1 and result.stdout == b''
        assert message in result.stderr.decode()
    assert not any(' dump ' in line for line in log(world))


@needs_root
def test_a_failing_dump_exits_non_zero(world):
    path = binary_backup(world)
    result = run_binary(world, path, 'dump', 'latest', FAKE_RC='1')
    assert result.returncode == 1


@needs_root
def test_dump_refuses_to_write_to_a_terminal(world):
    assert_the_dump_never_reaches_a_terminal(world, binary_backup(world), lambda: len(log(world)))


@needs_root
@pytest.mark.parametrize('unit', [False, True])
def test_exec_hands_restic_its_arguments_verbatim_and_the_secrets_off_argv(world, unit):
    path = script(world, (0, 18, 0))
    # The units' cache directory: named by systemd in a unit, found at its place by hand.
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), 'CACHE_DIRECTORY': str(world / 'cache')}
    if unit:
        env.update(CREDENTIALS_DIRECTORY=str(world / 'creds'))
    result = subprocess.run(['bash', str(path), 'exec', '--', *UGLY_ARGS], capture_output=True, env=env,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    argv = [arg.decode() for arg in last_argv(world)]
    assert argv[-len(UGLY_ARGS):] == UGLY_ARGS
    # Before them only the instance's own options: its cache (the units' cache directory), nothing secret.
    assert argv[:-len(UGLY_ARGS)] == ['--cache-dir', str(world / 'cache')]
    assert not (world / 'tmp' / 'pwned').exists()
    line = log(world)[-1]
    # The passphrase reached restic (a file in the unit, stdin by hand) and the repository its variable.
    assert line.endswith('|pw=pw-secret|repo=/srv/repo')
    for secret in (b'pw-secret', b'/srv/repo'):
        assert secret not in (world / 'store' / 'argv').read_bytes()


@needs_root
def test_exec_passes_restic_s_exit_status_and_output_on(world):
    path = script(world, (0, 18, 0))
    listed = run(world, path, 'exec', '--', 'snapshots', unit=False)
    assert listed.returncode == 0 and '1111aaaa  2026-01-01' in listed.stdout
    failed = run(world, path, 'exec', '--', 'check', unit=False, FAKE_RC='3')
    assert failed.returncode == 3


@needs_root
def test_exec_runs_restic_as_the_request_s_user(job_library):
    """As root, for an instance of user nobody: restic runs as nobody, with the passphrase that root read."""
    with world_for_another_user(job_library, 'restic', FAKE_RESTIC,
                                {'passphrase': 'pw-secret', 'env.RESTIC_REPOSITORY': '/srv/repo'}) as base:
        commands = _restic.Commands(binary=str(base / 'restic'), version=(0, 18, 0), instance='app',
                                    backup_name='db.sql', host='h1')
        exec_as_nobody(base, 'restic', _restic.shell_data(commands), 'stats', env_names=('RESTIC_REPOSITORY',))
        assert (base / 'store' / 'log').read_text().endswith('stats|pw=pw-secret|repo=/srv/repo\n')


@needs_root
@pytest.mark.parametrize('unit', [False, True])
def test_snapshots_json_is_one_json_list_with_id_time_host_and_size(world, unit):
    result = run(world, script(world, (0, 18, 0)), 'snapshots', '--json', unit=unit)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{'id': '1111aaaa' + '0' * 56, 'time': '2026-01-01T00:00:00.123456789+01:00',
                                          'host': 'h1', 'size': 9}]
    assert '--quiet snapshots --json --tag selfhost-backup:app --host h1|' in log(world)[-1]


@needs_root
def test_snapshots_json_fails_when_restic_fails(world):
    result = run(world, script(world, (0, 18, 0)), 'snapshots', '--json', unit=False, FAKE_RC='1')
    assert result.returncode != 0


@needs_root
def test_plain_snapshots_is_unchanged(world):
    result = run(world, script(world, (0, 18, 0)), 'snapshots', unit=False)
    assert result.returncode == 0 and result.stdout == '1111aaaa  2026-01-01 00:00:00  host  tag  /db.sql\n'


# A drill command as a requester writes one: the dump into a scratch copy, a check of its content, exit non-zero on
# any failure. Here the check compares the scratch copy with what the backup dumped.
def drill_cmd(world, expected='dump-data'):
    return f'scratch="$(mktemp)"; cat >"$scratch" && cp "$scratch" {world}/drilled && test "$(cat "$scratch")" = {expected}'


def fake_df(world, available):
    """df -P -B1 reporting ``available`` bytes free wherever it is asked."""
    bin_dir = world / 'df-bin'
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / 'df').write_text('#!/bin/sh\necho "Filesystem 1-blocks Used Available Capacity Mounted on"\n'
                                f'echo "/dev/x 1000 990 {available} 99% /tmp"\n')
    (bin_dir / 'df').chmod(0o755)
    return f'{bin_dir}:{os.environ["PATH"]}'


@pytest.mark.parametrize('version', [(0, 14, 0), (0, 18, 0)])
def test_a_drill_streams_the_dump_into_drill_cmd_and_passes(world, version):
    path = script(world, version, drill_cmd=drill_cmd(world))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest')
    assert result.returncode == 0, result.stderr
    assert (world / 'drilled').read_text() == 'dump-data'
    assert 'drill of snapshot latest of instance app: 9 bytes into drill_cmd' in result.stderr
    assert 'drill of snapshot latest of instance app passed' in result.stderr
    # The snapshot is checked and sized first, in this instance's snapshots only; the live restore never runs.
    assert any(' ls --json --tag selfhost-backup:app --host h1 --path /db.sql latest|' in line for line in log(world))
    assert any('--quiet dump --tag selfhost-backup:app --host h1 --path /db.sql latest /db.sql|' in line for line in log(world))
    assert not (world / 'restored').exists()


def test_a_passed_drill_in_its_unit_leaves_its_restore_time_for_the_metrics_hook(world):
    # With metrics, the drill unit leaves the seconds it took once it held the lock (the hook reads it); a failed
    # drill leaves none, nor a stale one.
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world), metrics_file=str(world / 'm' / 'x.prom'))
    assert run(world, path, 'backup').returncode == 0
    assert run(world, path, 'drill', 'latest').returncode == 0
    assert re.fullmatch(r'seconds=[0-9]+\n', (world / 'cache' / 'last-drill').read_text())
    failing = script(world, (0, 18, 0), drill_cmd=drill_cmd(world, expected='other'),
                     metrics_file=str(world / 'm' / 'x.prom'))
    assert run(world, failing, 'drill', 'latest').returncode == 1
    assert not (world / 'cache' / 'last-drill').exists()


@pytest.mark.skipif(os.geteuid() != 0, reason='a drill by hand runs as root')
def test_a_drill_by_hand_of_one_snapshot_takes_the_same_path(world):
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', '1111aaaa', unit=False)
    assert result.returncode == 0, result.stderr
    assert (world / 'drilled').read_text() == 'dump-data'
    assert any(' ls --json 1111aaaa|' in line for line in log(world))
    assert any('--quiet dump 1111aaaa /db.sql|' in line for line in log(world))


def test_a_failing_drill_cmd_fails_the_drill_naming_it(world):
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world, expected='other-rows'))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest')
    assert result.returncode == 1
    assert ('drill failed: drill_cmd exited 1 (the restore into the scratch copy or a check failed; its messages are '
            'above)') in result.stderr
    assert 'passed' not in result.stderr


def test_a_cut_dump_fails_the_drill_although_drill_cmd_took_it(world):
    # drill_cmd that does not check the content: only the tool's exit status tells that the stream was cut.
    path = script(world, (0, 18, 0), drill_cmd=f'cat >{world}/drilled')
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest', FAKE_DUMP_CUT='4')
    assert result.returncode == 1
    assert 'Fatal: pack 0123abcd: unexpected EOF' in result.stderr
    assert ("drill failed: the dump of snapshot 'latest' could not be read to its end (restic exit 1), although "
            'drill_cmd accepted what it got') in result.stderr
    assert (world / 'drilled').read_text() == 'dump'


def test_an_unreadable_snapshot_fails_the_drill_naming_the_repository_not_drill_cmd(world):
    # A snapshot whose data went (removed, a pack lost) cuts the stream: drill_cmd fails on what it got, and the
    # message names the tool's failure, the cause, before drill_cmd's.
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest', FAKE_DUMP_CUT='4')
    assert result.returncode == 1
    assert 'Fatal: pack 0123abcd: unexpected EOF' in result.stderr
    assert ("drill failed: the dump of snapshot 'latest' could not be read to its end (restic exit 1; its messages "
            "are above), and drill_cmd exited 1 on what it got") in result.stderr
    assert 'drill_cmd exited 1 (the restore' not in result.stderr and 'passed' not in result.stderr


def test_a_drill_cmd_that_stops_reading_early_fails_the_drill(world):
    # A dump far larger than a pipe's buffer: the tool is cut off when drill_cmd leaves with exit 0.
    path = script(world, (0, 18, 0), backup_cmd='head -c 2000000 /dev/zero', drill_cmd='head -c 10 >/dev/null')
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest')
    assert result.returncode == 1
    assert "drill failed: drill_cmd exited 0 without reading the whole dump of snapshot 'latest'" in result.stderr


def test_a_drill_without_room_for_the_scratch_copy_fails_before_it_starts(world):
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest', PATH=fake_df(world, 5), TMPDIR=str(world))
    assert result.returncode == 1
    # A request without drill_space: the dump's size alone.
    assert (f"not enough space for the drill's scratch copy in {world}: 5 bytes free, 9 bytes needed (the dump of "
            "snapshot 'latest' is 9 bytes; the request's drill_space counts 1 times that + 0 bytes): free some space "
            'there, or give the drill another TMPDIR') in result.stderr
    assert not (world / 'drilled').exists() and not any(' dump ' in line for line in log(world))
    # Room for exactly the dump is enough.
    assert run(world, path, 'drill', 'latest', PATH=fake_df(world, 9), TMPDIR=str(world)).returncode == 0


@pytest.mark.parametrize('free, passes', [(40, False), (41, True)])
def test_a_drill_wants_the_room_of_the_request_s_drill_space(world, free, passes):
    """A restored database is bigger than its dump: the request's drill_space (factor 3, base 14 bytes here) asks
    for 3 x 9 + 14 = 41 bytes, and the error names both numbers and the directory."""
    spec = _job_script.instance_spec(
        _layout.Layout('restic', 'app'),
        {'user': getpass.getuser(), 'backup_name': 'db.sql', 'backup_cmd': 'printf dump-data', 'restore_cmd': 'cat',
         'drill_cmd': drill_cmd(world), 'drill_space': {'factor': 3, 'base_bytes': 14}},
        {'lock_wait': 300, 'restore': {'stop_units': []},
         'monitoring': {'late_after': 0, 'ping_timeout': 10, 'ping_retries': 0}}, {}, (), env_names=())
    assert (spec.drill_space_factor, spec.drill_space_base) == (3, 14)
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world), drill_space_factor=spec.drill_space_factor,
                  drill_space_base=spec.drill_space_base)
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest', PATH=fake_df(world, free), TMPDIR=str(world))
    if passes:
        assert result.returncode == 0, result.stderr
        assert f"9 bytes into drill_cmd (41 bytes free in {world}, 41 needed)" in result.stderr
        assert (world / 'drilled').read_text() == 'dump-data'
    else:
        assert result.returncode == 1
        assert (f"not enough space for the drill's scratch copy in {world}: 40 bytes free, 41 bytes needed (the dump "
                "of snapshot 'latest' is 9 bytes; the request's drill_space counts 3 times that + 14 bytes)") \
            in result.stderr
        assert not (world / 'drilled').exists() and not any(' dump ' in line for line in log(world))


@pytest.mark.parametrize('snapshot, message', [
    ('3333cccc', "no snapshot '3333cccc' of instance app (see 'restic-restore-app snapshots'): nothing was drilled"),
    ('../etc', "not a valid snapshot: '../etc' (give latest or one listed by 'restic-restore-app snapshots')"),
])
def test_a_drill_of_a_snapshot_that_is_not_this_instance_s_fails_clearly_and_changes_nothing(world, snapshot, message):
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world))
    assert run(world, path, 'backup').returncode == 0
    before = log(world)
    result = run(world, path, 'drill', snapshot)
    assert result.returncode == 1 and message in result.stderr
    assert not (world / 'drilled').exists()
    assert not any(' dump ' in line or ' forget ' in line for line in log(world)[len(before):])


def test_without_drill_cmd_there_is_nothing_to_drill(world):
    path = script(world, (0, 18, 0))
    assert run(world, path, 'backup').returncode == 0
    result = run(world, path, 'drill', 'latest')
    assert result.returncode == 1
    assert 'the request of instance app has no drill_cmd: nothing to drill with' in result.stderr


def start_drill(world, path, seconds):
    """A drill whose drill_cmd takes ``seconds`` after reading the dump: it holds the instance lock meanwhile."""
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), 'CREDENTIALS_DIRECTORY': str(world / 'creds'),
           'CACHE_DIRECTORY': str(world / 'cache')}
    drill = subprocess.Popen(['bash', str(path), 'drill', 'latest'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while not (world / 'drilling').exists():
        assert drill.poll() is None and time.monotonic() < deadline, drill.communicate()
        time.sleep(0.05)
    return drill


def test_a_backup_waits_for_a_running_drill_then_runs(world):
    path = script(world, (0, 18, 0), lock_wait=30,
                  drill_cmd=f'cat >/dev/null; touch {world}/drilling; sleep 2; touch {world}/drill-done')
    assert run(world, path, 'backup').returncode == 0
    drill = start_drill(world, path, 2)
    backup = run(world, path, 'backup')
    drill_out = drill.communicate(timeout=30)
    assert drill.returncode == 0, drill_out
    assert backup.returncode == 0, backup.stderr
    # The backup started only once the drill was over, and said what it was waiting for.
    assert (world / 'drill-done').stat().st_mtime <= (world / 'store' / 'data').stat().st_mtime
    assert 'instance app is busy: ' in backup.stderr and f'{path} drill latest (pid ' in backup.stderr
    assert 'waiting up to 30s' in backup.stderr


@pytest.mark.parametrize('step, unit', [('backup', True), ('restore', True), ('drill', True),
                                        pytest.param('restore', False, marks=needs_root, id='restore-by-hand'),
                                        pytest.param('drill', False, marks=needs_root, id='drill-by-hand')])
def test_a_run_that_finds_the_lock_held_too_long_fails_naming_the_holder(world, step, unit):
    path = script(world, (0, 18, 0), lock_wait=1,
                  drill_cmd=f'cat >/dev/null; touch {world}/drilling; sleep 6')
    assert run(world, path, 'backup').returncode == 0
    drill = start_drill(world, path, 6)
    try:
        started = time.monotonic()
        args = [step] if step == 'backup' else [step, 'latest']
        # By hand the cache is the units' one (CACHE_DIRECTORY), where the drill's unit holds the lock.
        result = run(world, path, *args, unit=unit, CACHE_DIRECTORY=str(world / 'cache'))
        waited = time.monotonic() - started
    finally:
        os.killpg(drill.pid, signal.SIGTERM)
        drill.communicate()
    assert result.returncode == 1
    assert 1 <= waited < 5
    holder = re.search(r'held by (.*) \(pid ([0-9]+), run by hand\): ' + step + ' not run; run it again when that has '
                       'finished', result.stderr)
    assert holder, result.stderr
    assert holder.group(1) == f'{path} drill latest'
    assert f"gave up after waiting 1s for the lock of instance app ({world / 'cache'})" in result.stderr
    assert not (world / 'restored').exists()


# SELFHOST_BACKUP_LOCKED is how the run under flock learns that it holds the lock. In root's environment by mistake it
# skipped the lock (and restore --into's check) and removed the file it named (review of issue 19): it is trusted only
# when it names a marker as the locking run makes them, a file of the run's user in the instance's cache directory.
def stray_markers(world):
    """What SELFHOST_BACKUP_LOCKED may name that is not this run's marker, each with the file that must survive."""
    cache = world / 'cache'
    victim = world / 'victim'
    victim.write_text('keep me')
    linked = cache / '.selfhost-backup-lock-started.AAAAAAAAAA'
    linked.symlink_to(victim)
    foreign = cache / '.selfhost-backup-lock-started.BBBBBBBBBB'
    foreign.write_text('')
    os.chown(foreign, 65534, 65534)
    hardlinked = cache / '.selfhost-backup-lock-started.CCCCCCCCCC'
    os.link(victim, hardlinked)
    misnamed = cache / 'last-backup'
    misnamed.write_text('seconds=1\n')
    outside = world / '.selfhost-backup-lock-started.DDDDDDDDDD'
    outside.write_text('')
    return [(victim, victim), (linked, victim), (foreign, foreign), (hardlinked, victim), (misnamed, misnamed),
            (outside, outside), (cache / '.selfhost-backup-lock-started.EEEEEEEEEE/../last-backup', misnamed)]


@needs_root
@pytest.mark.parametrize('step', ['backup', 'restore', 'drill'])
def test_a_lock_marker_in_the_environment_is_trusted_only_when_the_locking_run_made_it(world, step):
    path = script(world, (0, 18, 0), drill_cmd=f'cat >/dev/null; touch {world}/drilling; sleep 6',
                  restore_into_cmd=f'echo "check=${{SELFHOST_BACKUP_CHECK-}}" >> {world}/into; cat >/dev/null',
                  restore_checks_names=True)
    assert run(world, path, 'backup').returncode == 0
    markers = stray_markers(world)
    drill = start_drill(world, path, 6)
    try:
        args = {'backup': ['backup'], 'restore': ['restore', 'latest', '--into', 'copy'], 'drill': ['drill', 'latest']}
        before = log(world)
        for marker, survivor in markers:
            result = run(world, path, *args[step], SELFHOST_BACKUP_LOCKED=str(marker))
            assert result.returncode == 1, (marker, result.stderr)
            assert (f'SELFHOST_BACKUP_LOCKED={marker} is not a lock marker of instance app (the restore script sets '
                    'it for itself, under the instance lock): nothing was run; unset it and run the command again') \
                in result.stderr
            assert survivor.exists() or survivor.is_symlink(), marker
            # Nothing ran while the drill holds the lock: no tool call, not even the restore command's check.
            assert log(world) == before
            assert not (world / 'into').exists()
    finally:
        os.killpg(drill.pid, signal.SIGTERM)
        drill.communicate()
    assert (world / 'victim').read_text() == 'keep me'


@pytest.mark.parametrize('step', ['backup', 'restore', 'drill'])
def test_the_locking_run_hands_its_marker_over_and_leaves_none(world, step):
    path = script(world, (0, 18, 0), drill_cmd=drill_cmd(world))
    assert run(world, path, 'backup').returncode == 0
    args = {'backup': ['backup'], 'restore': ['restore', 'latest'], 'drill': ['drill', 'latest']}[step]
    result = run(world, path, *args)
    assert result.returncode == 0, result.stderr
    assert not list((world / 'cache').glob('.selfhost-backup-lock-started.*'))


def test_a_run_stopped_while_it_waits_for_the_lock_leaves_no_marker(world):
    path = script(world, (0, 18, 0), lock_wait=30, drill_cmd=f'cat >/dev/null; touch {world}/drilling; sleep 6')
    assert run(world, path, 'backup').returncode == 0
    drill = start_drill(world, path, 6)
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), 'CREDENTIALS_DIRECTORY': str(world / 'creds'),
           'CACHE_DIRECTORY': str(world / 'cache')}
    waiting = subprocess.Popen(['bash', str(path), 'backup'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not list((world / 'cache').glob('.selfhost-backup-lock-started.*')):
            assert waiting.poll() is None and time.monotonic() < deadline, waiting.communicate()
            time.sleep(0.05)
        os.killpg(waiting.pid, signal.SIGTERM)
        waiting.communicate(timeout=20)
    finally:
        os.killpg(drill.pid, signal.SIGTERM)
        drill.communicate()
    assert waiting.returncode != 0
    assert not list((world / 'cache').glob('.selfhost-backup-lock-started.*'))


# A run by hand starts as a terminal's shell starts it: signals at their defaults, whatever the test runner inherited
# (nohup ignores HUP, a command started with & by a script ignores INT and QUIT, and so would the script's traps).
AT_DEFAULT_SIGNALS = ['env', '--default-signal=HUP,INT,QUIT,TERM,TSTP']


def by_hand_env(world, **extra):
    """The environment of a run by hand: the fake systemctl on PATH, the fake repository, the units' cache."""
    return {'PATH': fake_systemctl(world), 'FAKE_STORE': str(world / 'store'), 'CACHE_DIRECTORY': str(world / 'cache'),
            **extra}


def restore_by_hand(world, path, started=None, dump_delay='2'):
    """``restore latest`` by hand (as root), its own process group as a shell's job; returns once ``started()``
    (default: the dump has begun, so the run holds the lock)."""
    env = by_hand_env(world, FAKE_DUMP_DELAY=dump_delay, FAKE_START_DELAY=os.environ.get('FAKE_START_DELAY', '0'))
    restore = subprocess.Popen([*AT_DEFAULT_SIGNALS, 'bash', str(path), 'restore', 'latest'], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    started = started or (lambda: any(' dump ' in line for line in log(world)))
    deadline = time.monotonic() + 20
    while not started():
        assert restore.poll() is None and time.monotonic() < deadline, restore.communicate()
        time.sleep(0.05)
    return restore


def wait_for_file(process, path):
    deadline = time.monotonic() + 20
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


def run_of_the_lock_is_free(world, path):
    result = run(world, path, 'backup')
    return result.returncode == 0 and 'is busy' not in result.stderr


# A signal to the restore script's own process only (kill PID, sudo relaying it, timeout(1)) used to stop that
# process and leave the locked run it started going on: it stopped the units and restored after the caller gave up.
@needs_root
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda sig: sig.name)
def test_a_signal_to_the_restore_script_alone_stops_the_restore_before_it_stops_anything(world, sig):
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0)
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path)
    os.kill(restore.pid, sig)
    stderr = restore.communicate(timeout=20)[1]
    # Ctrl-C's SIGINT ends the script by SIGINT once all is done: a shell running it stops too (see the loop test).
    assert restore.returncode == (-signal.SIGINT if sig == signal.SIGINT else 128 + signal.SIGTERM), stderr
    assert f'got {sig.name}: stopping the run it started and all that run started' in stderr
    # The dump was still on its way (FAKE_DUMP_DELAY): it never arrives, nothing is stopped or restored, later too.
    time.sleep(2.5)
    order = world / 'store' / 'order'
    assert not order.exists() or 'first byte sent' not in order.read_text()
    assert systemctl_calls(world) == []
    assert not (world / 'restored').exists()
    assert run_of_the_lock_is_free(world, path)


@needs_root
@pytest.mark.parametrize('signals', [[signal.SIGINT], [signal.SIGTERM, signal.SIGTERM]], ids=['ctrl-c', 'twice'])
def test_a_restore_stopped_by_hand_mid_restore_starts_the_units_it_stopped_again(world, signals):
    # Ctrl-C signals the script's whole process group; a second TERM would kill the run inside its EXIT trap.
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0,
                  restore_cmd=f'touch {world}/restoring; sleep 30; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path)
    wait_for_file(restore, world / 'restoring')
    for sig in signals:
        (os.killpg if sig == signal.SIGINT else os.kill)(restore.pid, sig)
        time.sleep(0.1)
    stderr = restore.communicate(timeout=20)[1]
    assert restore.returncode != 0, stderr
    assert systemctl_calls(world)[-1:] == ['start -- running.service'], stderr
    assert 'stop -- running.service' in systemctl_calls(world)
    assert not (world / 'restored').exists()
    assert run_of_the_lock_is_free(world, path)


# A second signal while the script handled the first (Ctrl-C pressed twice or held down; timeout(1) signals its
# command, then its process group) ran the handler again inside itself and killed the search for the run's session:
# the script returned at once and the run went on, restored and started the units after the caller had gone.
@needs_root
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_a_restore_stopped_twice_in_a_row_is_stopped_once_and_returns_after_it(world, sig):
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0,
                  restore_cmd=f'touch {world}/restoring; sleep 4; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path)
    wait_for_file(restore, world / 'restoring')
    for each in (sig, sig, sig):
        os.killpg(restore.pid, each)
        time.sleep(0.005)
    stderr = restore.communicate(timeout=20)[1]
    calls = systemctl_calls(world)
    assert calls[-1:] == ['start -- running.service'], (calls, stderr)
    assert 'pop_var_context' not in stderr and stderr.count(f'got {sig.name}: stopping the run') == 1, stderr
    time.sleep(4.5)
    assert not (world / 'restored').exists()
    assert systemctl_calls(world) == calls
    assert run_of_the_lock_is_free(world, path)


# Ctrl-C in a shell loop of restores: the shell stops only at a command that SIGINT ended; the script exiting 143 made
# it go on with the next restore, which stopped the units and restored.
@needs_root
def test_ctrl_c_stops_a_loop_of_restores_by_hand(world):
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0,
                  restore_cmd=f'echo >> {world}/restores; sleep 30; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    env = by_hand_env(world)
    loop = subprocess.Popen([*AT_DEFAULT_SIGNALS, 'bash', '-c',
                             f'for i in 1 2; do bash {path} restore latest; done; touch {world}/loop-went-on'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for_file(loop, world / 'restores')
    os.killpg(loop.pid, signal.SIGINT)
    stderr = loop.communicate(timeout=20)[1]
    assert loop.returncode == -signal.SIGINT, stderr
    assert (world / 'restores').read_text() == '\n' and not (world / 'loop-went-on').exists()
    assert systemctl_calls(world)[-1:] == ['start -- running.service']


# A restore by hand runs its script under `setsid env ...`: the holder is named as for a unit's run all the same.
@needs_root
def test_a_run_that_waits_for_a_restore_by_hand_names_it(world):
    path = script(world, (0, 18, 0), lock_wait=0, restore_cmd=f'touch {world}/restoring; sleep 3; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path)
    wait_for_file(restore, world / 'restoring')
    backup = run(world, path, 'backup')
    restore.communicate(timeout=20)
    assert restore.returncode == 0
    assert backup.returncode == 1
    assert re.search(r'held by ' + re.escape(f'{path} restore latest') + r' \(pid [0-9]+, run by hand\): backup not run',
                     backup.stderr), backup.stderr


# The terminal went away (ssh dropped: a HUP, and every write to it fails) or a Ctrl-C also ended the `| tee` reading
# the output (a write raises SIGPIPE): the script's message must not end it before it stops the run, and the run's
# message must not end its EXIT trap before it starts the units again.
@needs_root
@pytest.mark.parametrize('mid_restore', [False, True], ids=['before-stop', 'mid-restore'])
def test_a_restore_stopped_by_hand_whose_output_is_gone_stops_and_starts_the_units_again(world, mid_restore):
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0,
                  restore_cmd=f'touch {world}/restoring; sleep 30; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path)
    if mid_restore:
        wait_for_file(restore, world / 'restoring')
    restore.stdout.close()
    restore.stderr.close()
    os.kill(restore.pid, signal.SIGHUP)
    restore.wait(timeout=20)
    time.sleep(3)
    assert not (world / 'restored').exists()
    calls = systemctl_calls(world)
    if mid_restore:
        assert calls[-1:] == ['start -- running.service'], calls
    else:
        assert calls == [] and not (world / 'restoring').exists(), calls
    assert run_of_the_lock_is_free(world, path)


# flock ignores the signal and holds the lock until the run's EXIT trap is done: the script (and timeout(1), sudo, the
# shell with it) returns after that, with the run's status.
@needs_root
def test_a_restore_stopped_by_hand_returns_only_after_the_units_started_again(world, monkeypatch):
    monkeypatch.setenv('FAKE_START_DELAY', '2')
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0,
                  restore_cmd=f'touch {world}/restoring; sleep 30; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path)
    wait_for_file(restore, world / 'restoring')
    t0 = time.monotonic()
    os.kill(restore.pid, signal.SIGTERM)
    restore.wait(timeout=20)
    took = time.monotonic() - t0
    calls = systemctl_calls(world)
    time.sleep(3)
    stderr = restore.communicate(timeout=20)[1]
    assert calls[-1:] == ['start -- running.service'], (took, calls, systemctl_calls(world), restore.returncode, stderr)
    assert run_of_the_lock_is_free(world, path)


@needs_root
def test_a_restore_stopped_by_hand_while_it_waits_for_the_lock_never_runs(world):
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=30,
                  drill_cmd=f'cat >/dev/null; touch {world}/drilling; sleep 4')
    assert run(world, path, 'backup').returncode == 0
    drill = start_drill(world, path, 4)
    try:
        restore = restore_by_hand(world, path,
                                  started=lambda: list((world / 'cache').glob('.selfhost-backup-lock-started.*')))
        time.sleep(0.3)  # flock waits for the lock the drill holds
        calls_before = len(log(world))
        os.kill(restore.pid, signal.SIGTERM)
        stderr = restore.communicate(timeout=20)[1]
    finally:
        drill_out = drill.communicate(timeout=30)
    assert drill.returncode == 0, drill_out
    assert restore.returncode == 128 + signal.SIGTERM, stderr
    assert 'got SIGTERM: stopping the run it started' in stderr
    # The lock is free again: the restore never took it, never read the repository, stopped nothing.
    assert run_of_the_lock_is_free(world, path)
    assert not [line for line in log(world)[calls_before:] if ' dump ' in line]
    assert systemctl_calls(world) == []
    assert not (world / 'restored').exists()
    assert not list((world / 'cache').glob('.selfhost-backup-lock-started.*'))


@needs_root
def test_a_lock_marker_that_is_gone_runs_nothing(world):
    path = script(world, (0, 18, 0))
    assert run(world, path, 'backup').returncode == 0
    before = log(world)
    gone = world / 'cache' / '.selfhost-backup-lock-started.AbCdE12345'
    result = run(world, path, 'restore', 'latest', unit=False, CACHE_DIRECTORY=str(world / 'cache'),
                 SELFHOST_BACKUP_LOCKED=str(gone))
    assert result.returncode == 1
    assert (f'the lock marker {gone} is gone: the restore script that made it was stopped before this run began (or '
            'SELFHOST_BACKUP_LOCKED is stray): nothing was run') in result.stderr
    assert log(world) == before
    assert not (world / 'restored').exists()


# Ctrl-Z cannot pause a run in another session: it is ignored, and the restore goes on to its end with its script.
@needs_root
def test_ctrl_z_does_not_stop_a_restore_by_hand_alone(world):
    path = script(world, (0, 18, 0), stop_units=('running.service',),
                  restore_cmd=f'touch {world}/restoring; sleep 1; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    restore = restore_by_hand(world, path, dump_delay='0')
    wait_for_file(restore, world / 'restoring')
    os.killpg(restore.pid, signal.SIGTSTP)  # what the terminal sends the job on Ctrl-Z
    stderr = restore.communicate(timeout=20)[1]
    assert restore.returncode == 0, stderr
    assert (world / 'restored').read_text() == 'dump-data'
    assert systemctl_calls(world)[-1:] == ['start -- running.service']


# timeout(1) sends TERM to the script, then to its process group, then CONT: the restore stops all the same.
@needs_root
@pytest.mark.parametrize('dump_delay', ['0', '3'], ids=['mid-restore', 'before-the-dump'])
def test_timeout_stops_a_restore_by_hand(world, dump_delay):
    path = script(world, (0, 18, 0), stop_units=('running.service',), lock_wait=0,
                  restore_cmd=f'touch {world}/restoring; sleep 4; cat > {world}/restored')
    assert run(world, path, 'backup').returncode == 0
    result = subprocess.run([*AT_DEFAULT_SIGNALS, 'timeout', '1.5', 'bash', str(path), 'restore', 'latest'],
                            capture_output=True, text=True, env=by_hand_env(world, FAKE_DUMP_DELAY=dump_delay),
                            stdin=subprocess.DEVNULL, check=False, timeout=20)
    assert result.returncode == 124, result.stderr
    assert 'got SIGTERM: stopping the run it started' in result.stderr
    time.sleep(4)  # past the end restore_cmd would have reached
    assert not (world / 'restored').exists()
    calls = systemctl_calls(world)
    assert calls == [] or calls[-1] == 'start -- running.service', calls
    assert run_of_the_lock_is_free(world, path)


def test_the_lock_is_not_inherited_by_what_a_run_leaves_behind(world):
    # A drill_cmd that leaves a process running (a scratch server it failed to stop): the next run is not blocked.
    path = script(world, (0, 18, 0), lock_wait=0,
                  drill_cmd=f'cat >/dev/null; sleep 30 >/dev/null 2>&1 & echo $! >{world}/leftover')
    assert run(world, path, 'backup').returncode == 0
    assert run(world, path, 'drill', 'latest').returncode == 0
    leftover = int((world / 'leftover').read_text())
    try:
        os.kill(leftover, 0)  # still there
        result = run(world, path, 'backup')
        assert result.returncode == 0, result.stderr
    finally:
        os.kill(leftover, signal.SIGKILL)
