# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""selfhost-backup status against a fake systemctl and fake restore scripts (the real ones run in molecule)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

STATUS = Path(__file__).resolve().parents[3] / 'roles' / 'provider_common' / 'files' / 'selfhost-backup'
NOW = int(time.time())  # set again when each test starts (the fixture below)
EARLIER = object()  # the default of a time argument: relative to NOW when the test runs

# systemctl show <unit> --timestamp=unix --property=...: answers from $FAKE_UNITS/<unit>.
FAKE_SYSTEMCTL = '#!/bin/sh\ncat "$FAKE_UNITS/$2" 2>/dev/null\n'


def restore_script(newest: str, late_after: int = 93600, rc: int = 0) -> str:
    # Like the real script, it states late_after in a readonly line, and answers "newest" (from the repository).
    return (f'#!/bin/sh\nreadonly LATE_AFTER={late_after}\n[ "$1" = newest ] || exit 2\n'
            f'[ ! -e "$0.locked" ] || {{ echo "Failed to create/acquire the lock (timeout)." >&2; exit 2; }}\n'
            f'echo "newest={newest} late_after={late_after}"\nexit {rc}\n')


@pytest.fixture(autouse=True)
def now(monkeypatch):
    """NOW is when each test starts: the status command compares the fake times with its own clock, and a loaded
    machine may run the suite for minutes."""
    monkeypatch.setattr(sys.modules[__name__], 'NOW', int(time.time()))


@pytest.fixture
def host(tmp_path):
    for name in ('state', 'bin', 'units', 'tools'):
        (tmp_path / name).mkdir()
    (tmp_path / 'tools' / 'systemctl').write_text(FAKE_SYSTEMCTL)
    (tmp_path / 'tools' / 'systemctl').chmod(0o755)
    return tmp_path


def unit(host, name, state='inactive', result='success', started=EARLIER, since=None, timeout='12h'):
    """What systemctl show says of a service: a run that started at `started` (None: never since boot; by default
    an hour ago), active since `since` when the state is activating."""
    started = NOW - 3600 if started is EARLIER else started
    (host / 'units' / name).write_text(
        f'ActiveState={state}\nResult={result}\nExecMainStartTimestamp={"@" + str(started) if started else ""}\n'
        f'InactiveExitTimestamp={"@" + str(since or started) if (since or started) else ""}\n'
        f'TimeoutStartUSec={timeout}\n')


def add(host, provider, instance, result='success', state='inactive', started=EARLIER, newest=EARLIER,
        late_after=93600, script_rc=0, installed=EARLIER, check=None, since=None, timeout='12h'):
    """An installed job; by default it ran an hour ago, made its newest snapshot 3500 s ago, installed 30 days ago."""
    started = NOW - 3600 if started is EARLIER else started
    newest = NOW - 3500 if newest is EARLIER else newest
    installed = NOW - 86400 * 30 if installed is EARLIER else installed
    job = f'{provider}-backup-{instance}'
    timers = [f'{job}.timer'] + ([f'{job}-check.timer'] if check else [])
    manifest = host / 'state' / f'{job}.json'
    manifest.write_text(json.dumps({'files': [], 'timers': timers}))
    # The manifest's time: when backup_jobs installed or last changed the job.
    os.utime(manifest, (installed, installed))
    unit(host, f'{job}.service', state, result, started, since, timeout)
    if check:
        unit(host, f'{job}-check.service', **check)
    # As systemd shows it: a timer's next elapse in the human form, whatever --timestamp says.
    next_run = time.strftime('%a %Y-%m-%d %H:%M:%S UTC', time.gmtime(NOW + 7200))
    (host / 'units' / f'{job}.timer').write_text(f'NextElapseUSecRealtime={next_run}\n')
    script = host / 'bin' / f'{provider}-restore-{instance}'
    script.write_text(restore_script('' if newest is None else str(newest), late_after, script_rc))
    script.chmod(0o755)


def status(host, *args):
    env = dict(os.environ, PATH=f'{host / "tools"}:{os.environ["PATH"]}', FAKE_UNITS=str(host / 'units'),
               SELFHOST_BACKUP_STATE_DIR=str(host / 'state'), SELFHOST_BACKUP_SCRIPT_DIR=str(host / 'bin'))
    return subprocess.run([sys.executable, str(STATUS), 'status', *args], capture_output=True, text=True, env=env,
                          check=False)


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='selfhost-backup status runs as root only')


def test_all_fine_exits_0_with_a_line_each(host):
    add(host, 'restic', 'app')
    add(host, 'borg', 'app')
    (host / 'state' / 'unrelated.json').write_text('{}')
    result = status(host)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('borg    app ') and lines[0].endswith(': OK')
    # 3500 s before NOW, taken when this test started.
    assert '(success)' in lines[1] and re.search(r'newest snapshot 5[89]m ago', lines[1]), lines[1]


def test_json_names_every_field(host):
    add(host, 'restic', 'db', late_after=600)
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['provider'] == 'restic' and entry['instance'] == 'db'
    assert entry['service'] == 'restic-backup-db.service'
    assert entry['result'] == 'success' and entry['last_run'] == NOW - 3600
    assert entry['newest_snapshot'] == NOW - 3500 and entry['late_after'] == 600
    assert entry['next_run'] == NOW + 7200
    assert entry['ok'] is False and entry['problems'] == ['late']  # 3500 s > 600 s


@pytest.mark.parametrize('changes, problems', [
    ({'result': 'exit-code', 'state': 'failed'}, ['failed']),
    ({'newest': None}, ['late']),
    ({'newest': NOW - 100000}, ['late']),
    ({'result': 'exit-code', 'state': 'failed', 'newest': NOW - 100000}, ['failed', 'late']),
    ({'script_rc': 1}, ['unreadable']),
])
def test_failed_late_or_unreadable_exit_1(host, changes, problems):
    add(host, 'restic', 'ok')
    add(host, 'borg', 'bad', **changes)
    result = status(host, '--json')
    assert result.returncode == 1
    entries = {entry['instance']: entry for entry in json.loads(result.stdout)}
    assert entries['ok']['ok'] is True
    assert entries['bad']['problems'] == problems
    text = status(host)
    assert text.returncode == 1 and ', '.join(problems).upper() in text.stdout


def test_never_run_and_installed_long_ago_is_late_but_not_failed(host):
    add(host, 'restic', 'new', result='success', started=None, newest=None, installed=NOW - 93700)
    result = status(host, '--json')
    entry = json.loads(result.stdout)[0]
    assert entry['result'] == 'never run' and entry['problems'] == ['late'] and entry['pending'] is False
    assert result.returncode == 1


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_right_after_a_converge_an_instance_is_pending_not_late(host, provider):
    # Installed a minute ago, never run, no snapshot yet (borg: no repository yet, its script says no archive).
    add(host, provider, 'fresh', started=None, newest=None, installed=NOW - 60)
    add(host, 'restic', 'old')
    result = status(host, '--json')
    assert result.returncode == 0, result.stdout
    entries = {entry['instance']: entry for entry in json.loads(result.stdout)}
    fresh = entries['fresh']
    assert fresh['ok'] is True and fresh['pending'] is True and fresh['problems'] == []
    assert fresh['result'] == 'never run' and fresh['newest_snapshot'] is None and fresh['installed'] == NOW - 60
    assert entries['old']['pending'] is False
    text = status(host)
    assert text.returncode == 0
    assert re.search(rf'^{provider} +fresh +last run - \(never run\), newest snapshot none, next run .*: PENDING$',
                     text.stdout, re.M), text.stdout


def test_pending_ends_after_late_after(host):
    add(host, 'restic', 'fresh', started=None, newest=None, installed=NOW - 700, late_after=600)
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['pending'] is False and entry['problems'] == ['late']


def test_a_first_run_that_failed_is_not_pending(host):
    add(host, 'restic', 'fresh', result='exit-code', state='failed', newest=None, installed=NOW - 7200)
    result = status(host, '--json')
    entry = json.loads(result.stdout)[0]
    assert result.returncode == 1
    assert entry['pending'] is False and entry['problems'] == ['failed', 'late']


def test_a_run_in_its_start_hooks_shows_when_it_started(host):
    # ExecStartPre= (the ping hook) still runs: systemd has no main process start time for this run yet.
    since = NOW - 2
    add(host, 'restic', 'app', state='activating', started=None, since=since)
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['running'] is True and entry['last_run'] == since and entry['running_since'] == since
    line = status(host).stdout.splitlines()[0]
    assert re.search(r'^restic +app +last run \S+ \S+ UTC \(running, for \d+s\), .*: RUNNING$', line), line


def test_a_running_backup_is_running_not_a_problem(host):
    # Its first run, five minutes in: neither pending nor late.
    started = NOW - 300
    add(host, 'restic', 'first', state='activating', started=started, newest=None, installed=started - 300)
    add(host, 'borg', 'nightly', state='deactivating', started=started + 180)
    result = status(host, '--json')
    assert result.returncode == 0, result.stdout
    entries = {entry['instance']: entry for entry in json.loads(result.stdout)}
    first = entries['first']
    assert first['running'] is True and first['result'] == 'running' and first['ok'] is True
    assert first['running_since'] == started and first['timeout'] == 43200 and first['pending'] is False
    assert entries['nightly']['running'] is True and entries['nightly']['problems'] == []
    lines = status(host).stdout.splitlines()
    assert re.search(r'^restic +first +last run \S+ \S+ UTC \(running, for [56]m\), .*: RUNNING$', lines[1]), lines
    assert lines[0].endswith(': RUNNING')


@pytest.mark.parametrize('timeout, ago, late_after, too_long', [
    ('12h', 43300, 93600, True),  # past its TimeoutStartSec=: systemd could not end it
    ('12h', 43000, 93600, False),
    ('1min 30s', 100, 93600, True),
    ('1d 2h', 93700, 93600, True),
    ('1d 2h', 93500, 93600, False),
    # Without a timeout (units from before limits.timeout had a default): late_after is the expected duration.
    ('infinity', 3700, 3600, True),
    ('infinity', 3500, 3600, False),
], ids=['past-12h', 'within-12h', 'past-90s', 'past-1d2h', 'within-1d2h', 'no-timeout-past-late-after',
        'no-timeout-within-late-after'])
def test_a_run_active_after_its_expected_duration_is_a_problem(host, timeout, ago, late_after, too_long):
    # ago: how long the run has been active (seconds before NOW, when the test starts)
    add(host, 'restic', 'stuck', state='activating', started=NOW - ago, newest=NOW - 60, late_after=late_after,
        timeout=timeout)
    result = status(host, '--json')
    entry = json.loads(result.stdout)[0]
    assert entry['running'] is True
    assert entry['problems'] == (['running too long'] if too_long else [])
    assert result.returncode == (1 if too_long else 0)
    if too_long:
        assert status(host).stdout.rstrip().endswith(': RUNNING TOO LONG')


def test_the_last_check_is_shown_and_a_failed_one_is_a_problem(host):
    add(host, 'restic', 'good', check={'result': 'success', 'started': NOW - 7200})
    add(host, 'restic', 'bad', check={'state': 'failed', 'result': 'exit-code', 'started': NOW - 7200})
    add(host, 'borg', 'unchecked', check={'started': None})
    add(host, 'borg', 'nocheck')
    result = status(host, '--json')
    assert result.returncode == 1
    entries = {entry['instance']: entry for entry in json.loads(result.stdout)}
    assert entries['good']['ok'] is True and entries['good']['check'] == {
        'service': 'restic-backup-good-check.service', 'state': 'inactive', 'last_run': NOW - 7200,
        'result': 'success'}
    assert entries['bad']['problems'] == ['check failed']
    assert entries['bad']['check']['result'] == 'exit-code'
    assert entries['unchecked']['ok'] is True and entries['unchecked']['check']['result'] == 'never run'
    assert entries['nocheck']['check'] is None
    lines = {line.split()[1]: line for line in status(host).stdout.splitlines()}
    assert re.search(r', check \S+ \S+ UTC \(success\), next run .*: OK$', lines['good'])
    assert lines['bad'].endswith(': CHECK FAILED') and '(exit-code), next run' in lines['bad']
    assert ', check - (never run), next run' in lines['unchecked']
    assert ', check ' not in lines['nocheck']


def test_a_check_still_running_after_its_timeout_is_a_problem(host):
    add(host, 'restic', 'slow', check={'state': 'activating', 'started': NOW - 700, 'timeout': '10min'})
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['problems'] == ['check running too long'] and entry['check']['result'] == 'running'


def test_no_instance(host):
    result = status(host)
    assert result.returncode == 0 and result.stdout == 'no backup instance on this host\n'


@pytest.mark.parametrize('running', ['backup', 'check'])
def test_a_running_job_s_lock_never_makes_the_instance_unreadable(host, running):
    """borg's backup and check hold the repository's lock for the whole run: status must not list the
    repository then (it would wait up to lock_wait and report UNREADABLE)."""
    busy = {'state': 'activating', 'started': NOW - 60}
    if running == 'backup':
        add(host, 'borg', 'app', **busy, check={'started': NOW - 86400})
    else:
        add(host, 'borg', 'app', check=busy)
    (host / 'bin' / 'borg-restore-app.locked').write_text('')
    result = status(host, '--json')
    assert result.returncode == 0, result.stdout + result.stderr
    entry = json.loads(result.stdout)[0]
    assert entry['ok'] is True and entry['problems'] == [] and entry['error'] == ''
    assert entry['late_after'] == 93600
    assert entry['running'] is (running == 'backup')


def add_drill(host, provider, instance, result='success', state='inactive', started=EARLIER, ended=EARLIER,
              since=None, timeout='12h'):
    """The drill job of an instance: its manifest, and its service as systemd shows it (by default a drill that
    started two hours ago and took 200 s)."""
    started = NOW - 7200 if started is EARLIER else started
    ended = NOW - 7000 if ended is EARLIER else ended
    job = f'{provider}-drill-{instance}'
    (host / 'state' / f'{job}.json').write_text(json.dumps({'files': [], 'timers': [f'{job}.timer']}))
    unit(host, f'{job}.service', state, result, started, since, timeout)
    with open(host / 'units' / f'{job}.service', 'a', encoding='utf-8') as handle:
        handle.write(f'ExecMainExitTimestamp={"@" + str(ended) if ended else ""}\n')


def test_the_last_drill_shows_its_result_age_and_duration(host):
    add(host, 'restic', 'app')
    add_drill(host, 'restic', 'app')
    add(host, 'borg', 'plain')
    result = status(host, '--json')
    assert result.returncode == 0, result.stderr
    entries = {entry['instance']: entry for entry in json.loads(result.stdout)}
    assert entries['app']['drill'] == {'service': 'restic-drill-app.service', 'state': 'inactive',
                                       'last_run': NOW - 7200, 'result': 'success', 'age': entries['app']['drill']['age'],
                                       'duration': 200}
    assert 7200 <= entries['app']['drill']['age'] < 7400
    assert entries['plain']['drill'] is None
    lines = status(host).stdout.splitlines()
    app = next(line for line in lines if ' app ' in line)
    assert re.search(r', drill 2h ago \(success, took 3m\), next run .*: OK$', app), app
    assert 'drill' not in next(line for line in lines if ' plain ' in line)


def test_a_failed_drill_makes_the_instance_not_ok(host):
    add(host, 'borg', 'app')
    add_drill(host, 'borg', 'app', result='exit-code', state='failed')
    result = status(host)
    assert result.returncode == 1
    assert '(exit-code, took 3m)' in result.stdout and result.stdout.rstrip().endswith(': DRILL FAILED')
    assert json.loads(status(host, '--json').stdout)[0]['problems'] == ['drill failed']


def test_a_drill_never_run_is_fine_and_one_running_too_long_is_not(host):
    add(host, 'restic', 'new')
    add_drill(host, 'restic', 'new', started=None, ended=None)
    result = status(host)
    assert result.returncode == 0 and ', drill never run, ' in result.stdout
    add_drill(host, 'restic', 'new', state='activating', result='success', started=NOW - 7200, ended=None,
              timeout='1h')
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['problems'] == ['drill running too long'] and entry['drill']['result'] == 'running'
    assert entry['drill']['duration'] is None
