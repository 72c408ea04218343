# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The module end to end against a temporary root; the command runner is the only thing stubbed."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfhost.backup.plugins.module_utils._systemd_units import MANAGED_HEADER
from ansible_collections.selfhost.backup.plugins.modules import backup_jobs

MUTATING = ('enable', 'disable', 'daemon-reload', 'start', 'stop', 'restart')


class FakeSystemd:
    """Answers like systemctl / systemd-analyze and remembers which timers are enabled and active."""

    def __init__(self, verify_rc=0, bad_calendars=()):
        self.verify_rc = verify_rc
        self.bad_calendars = set(bad_calendars)
        self.calls = []
        self.enabled = set()
        self.active = set()
        self.verified = {}

    def run(self, argv):
        self.calls.append(list(argv))
        if argv[:2] == ['systemd-analyze', 'calendar']:
            return (1, '', 'Failed to parse calendar specification') if argv[2] in self.bad_calendars else (0, 'Normalized form: x', '')
        if argv[:2] == ['systemd-analyze', 'verify']:
            return self._verify(argv[2:])
        if argv[1] == 'show':
            return self._show(argv[3:])
        if argv[1] in ('enable', 'disable'):
            for unit in argv[3:]:
                self._systemctl(argv[1], unit)
            return 0, '', ''
        return self._systemctl(argv[1], argv[-1])

    def _show(self, units):
        # As systemctl show prints them: a block per unit, properties in systemd's order, not the one asked for.
        return 0, '\n\n'.join(
            f"ActiveState={'active' if unit in self.active else 'inactive'}\nId={unit}\n"
            f"UnitFileState={'enabled' if unit in self.enabled else 'disabled'}" for unit in units) + '\n', ''

    def _verify(self, paths):
        for path in paths:
            with open(path, encoding='utf-8') as handle:
                self.verified[os.path.basename(path)] = handle.read()
        if self.verify_rc:
            return self.verify_rc, '', f'{paths[0]}:9: Unknown key name in section [Service]'
        return 0, '', ''

    def _systemctl(self, command, unit):
        states = {'is-enabled': self.enabled, 'is-active': self.active}
        if command in states:
            return (0 if unit in states[command] else 1), '', ''
        if command == 'enable':
            self.enabled.add(unit)
            self.active.add(unit)
        elif command == 'disable':
            self.enabled.discard(unit)
            self.active.discard(unit)
        return 0, '', ''

    def mutating(self):
        return [call for call in self.calls if call[0] == 'systemctl' and call[1] in MUTATING]

    def verify_calls(self):
        return [call for call in self.calls if call[:2] == ['systemd-analyze', 'verify']]


@pytest.fixture
def systemd(monkeypatch):
    fake = FakeSystemd()
    monkeypatch.setattr(backup_jobs, 'CommandRunner', lambda module: fake)
    return fake


@pytest.fixture
def root(tmp_path):
    return tmp_path


def job_args(root, **changes):
    args = {
        'name': 'restic-backup-app',
        'user': 'postgres',
        'exec_start': [['/usr/bin/restic', 'backup', '--stdin-from-command', '--', '/bin/sh', '-c', 'pg_dumpall']],
        'environment': {'RESTIC_REPOSITORY': '/srv/backup/app'},
        'credentials': {'passphrase': '/etc/selfhost-backup/app.pass'},
        'after': ['postgresql.service'],
        'on_calendar': '*-*-* 02:30:00',
        'restore_script': {'name': 'restic-restore-app', 'content': '#!/bin/sh\nexec restic "$@"\n'},
        'extra_jobs': [{'suffix': 'check', 'exec_start': [['/usr/bin/restic', 'check']], 'on_calendar': 'weekly'}],
        'unit_dir': str(root / 'units'),
        'script_dir': str(root / 'bin'),
        'state_dir': str(root / 'state'),
    }
    args.update(changes)
    return {key: value for key, value in args.items() if value is not OMIT}


OMIT = object()


SHARED = ('unit_dir', 'script_dir', 'state_dir', 'daemon_reload', 'prune')


def run(args, root, check=False, diff=False):
    """The module's result; a failure is raised: SystemExit with status 1 and the result (conftest.py).

    ``args`` without ``jobs`` are the options of one job: they go in as a list of one, and the result of that job
    comes back with the run's ``changed`` and ``diff``."""
    one = 'jobs' not in args
    if one:
        args = {key: value for key, value in args.items() if key in SHARED} | {
            'jobs': [{key: value for key, value in args.items() if key not in SHARED}]}
    module_args = dict(args, _ansible_check_mode=check, _ansible_diff=diff, _ansible_remote_tmp=str(root / 'remote-tmp'))
    with patch_module_args(module_args):
        with pytest.raises(SystemExit) as info:
            backup_jobs.main()
    if info.value.code:
        raise info.value
    outcome = info.value.result
    if one:
        assert len(outcome['jobs']) == 1 and outcome['jobs'][0]['changed'] == outcome['changed']
        return outcome['jobs'][0] | {key: outcome[key] for key in ('changed', 'diff', 'pruned') if key in outcome}
    return outcome


def unit(root, name):
    return root / 'units' / name


def tree(root):
    """Every file under the managed directories, relative to root (the module's own temp dir excluded)."""
    found = []
    for top in ('units', 'bin', 'state'):
        for dirpath, dummy, filenames in os.walk(root / top):
            found += [os.path.relpath(os.path.join(dirpath, name), root) for name in filenames]
    return sorted(found)


ALL_FILES = [
    'bin/restic-restore-app',
    'state/restic-backup-app.json',
    'units/restic-backup-app-check.service',
    'units/restic-backup-app-check.timer',
    'units/restic-backup-app.service',
    'units/restic-backup-app.timer',
]
TIMERS = ['restic-backup-app.timer', 'restic-backup-app-check.timer']


def test_install_writes_verifies_reloads_and_starts(root, systemd):
    result = run(job_args(root), root)
    assert result['changed'] is True
    assert result['backup_service'] == 'restic-backup-app.service'
    assert result['restore_script'] == 'restic-restore-app'
    assert result['timers'] == TIMERS
    assert sorted(os.path.relpath(path, root) for path in result['files']) == [f for f in ALL_FILES if not f.startswith('state')]
    assert tree(root) == ALL_FILES
    assert 'diff' not in result
    service = unit(root, 'restic-backup-app.service').read_text()
    assert service.startswith(MANAGED_HEADER + '\n')
    assert 'ExecStart=/usr/bin/restic backup --stdin-from-command -- /bin/sh -c pg_dumpall\n' in service
    assert 'LoadCredential=passphrase:/etc/selfhost-backup/app.pass\n' in service
    assert 'After=postgresql.service\n' in service
    check = unit(root, 'restic-backup-app-check.service').read_text()
    assert 'ExecStart=/usr/bin/restic check\n' in check and 'User=postgres\n' in check
    assert 'Environment=RESTIC_REPOSITORY=/srv/backup/app\n' in check
    assert 'OnCalendar=weekly\n' in unit(root, 'restic-backup-app-check.timer').read_text()
    assert stat.S_IMODE(os.stat(root / 'bin' / 'restic-restore-app').st_mode) == 0o755
    assert stat.S_IMODE(os.stat(unit(root, 'restic-backup-app.timer')).st_mode) == 0o644
    # verified under the real names, with exactly the content that was then installed
    assert sorted(systemd.verified) == sorted(os.path.basename(f) for f in ALL_FILES if f.startswith('units'))
    assert systemd.verified['restic-backup-app.service'] == service
    # one enable for every timer: each systemctl enable reloads systemd
    assert systemd.mutating() == [
        ['systemctl', 'daemon-reload'],
        ['systemctl', 'enable', '--now', 'restic-backup-app.timer', 'restic-backup-app-check.timer'],
    ]
    manifest = json.loads((root / 'state' / 'restic-backup-app.json').read_text())
    assert manifest['timers'] == sorted(TIMERS)
    assert manifest['files'] == sorted(result['files'])


def test_calendars_are_checked_once_each(root, systemd):
    run(job_args(root), root)
    calendars = [call[2] for call in systemd.calls if call[:2] == ['systemd-analyze', 'calendar']]
    assert calendars == ['*-*-* 02:30:00', 'weekly']


def test_second_run_changes_nothing(root, systemd):
    run(job_args(root), root)
    systemd.calls.clear()
    result = run(job_args(root), root)
    assert result['changed'] is False
    assert systemd.mutating() == []
    assert systemd.verify_calls() == []


def test_check_mode_reports_without_writing(root, systemd):
    result = run(job_args(root), root, check=True, diff=True)
    assert result['changed'] is True
    assert tree(root) == []
    assert systemd.mutating() == []
    assert systemd.verify_calls() == []
    assert [entry['after_header'] for entry in result['diff']] == sorted(result['files'], key=result['files'].index)
    assert all(entry['before'] == '' and entry['after'] for entry in result['diff'])


def test_check_mode_reports_a_stopped_timer(root, systemd):
    run(job_args(root), root)
    systemd.enabled.discard('restic-backup-app.timer')
    systemd.calls.clear()
    result = run(job_args(root), root, check=True)
    assert result['changed'] is True
    assert systemd.mutating() == []


def test_diff_shows_only_the_changed_file(root, systemd):
    run(job_args(root), root)
    before = unit(root, 'restic-backup-app.timer').read_text()
    systemd.calls.clear()
    result = run(job_args(root, on_calendar='hourly'), root, diff=True)
    after = unit(root, 'restic-backup-app.timer').read_text()
    assert result['changed'] is True
    assert result['diff'] == [{
        'before_header': str(unit(root, 'restic-backup-app.timer')),
        'after_header': str(unit(root, 'restic-backup-app.timer')),
        'before': before,
        'after': after,
    }]
    assert 'OnCalendar=hourly\n' in after
    assert systemd.mutating() == [['systemctl', 'daemon-reload']]


def test_failed_verification_writes_nothing(root, systemd):
    systemd.verify_rc = 1
    with pytest.raises(SystemExit) as info:
        run(job_args(root), root)
    assert 'systemd-analyze verify rejected the units' in info.value.result['msg']
    assert 'restic-backup-app.service:9: Unknown key' in info.value.result['msg']
    assert str(root) not in info.value.result['msg']
    assert info.value.result['changed'] is False
    assert tree(root) == []
    assert systemd.mutating() == []


def test_failed_verification_keeps_the_installed_job(root, systemd):
    run(job_args(root), root)
    before = {path: (root / path).read_text() for path in ALL_FILES}
    systemd.verify_rc = 1
    systemd.calls.clear()
    with pytest.raises(SystemExit):
        run(job_args(root, user='other', restore_script={'name': 'restic-restore-app', 'content': 'new'}), root)
    assert {path: (root / path).read_text() for path in ALL_FILES} == before
    assert systemd.mutating() == []


def test_invalid_calendar_fails_before_anything(root, systemd):
    systemd.bad_calendars.add('every tuesdayish')
    with pytest.raises(SystemExit) as info:
        run(job_args(root, on_calendar='every tuesdayish'), root)
    assert "OnCalendar='every tuesdayish' is not a valid systemd calendar expression" in info.value.result['msg']
    assert tree(root) == []


def test_dropped_extra_job_is_stopped_and_removed(root, systemd):
    run(job_args(root), root)
    systemd.calls.clear()
    result = run(job_args(root, extra_jobs=[]), root, diff=True)
    assert result['changed'] is True
    assert tree(root) == [f for f in ALL_FILES if '-check.' not in f]
    assert systemd.mutating() == [
        ['systemctl', 'disable', '--now', 'restic-backup-app-check.timer'],
        ['systemctl', 'daemon-reload'],
    ]
    removed = [entry for entry in result['diff'] if entry['after'] == '']
    assert sorted(os.path.basename(entry['before_header']) for entry in removed) == [
        'restic-backup-app-check.service', 'restic-backup-app-check.timer']
    assert json.loads((root / 'state' / 'restic-backup-app.json').read_text())['timers'] == ['restic-backup-app.timer']


def test_wrong_mode_of_the_script_is_fixed_without_reload(root, systemd):
    run(job_args(root), root)
    os.chmod(root / 'bin' / 'restic-restore-app', 0o700)
    systemd.calls.clear()
    result = run(job_args(root), root)
    assert result['changed'] is True
    assert stat.S_IMODE(os.stat(root / 'bin' / 'restic-restore-app').st_mode) == 0o755
    assert systemd.mutating() == []
    assert systemd.verify_calls() == []


def test_hand_edited_unit_is_restored(root, systemd):
    run(job_args(root), root)
    path = unit(root, 'restic-backup-app.service')
    original = path.read_text()
    path.write_text(original.replace('User=postgres', 'User=root'))
    systemd.calls.clear()
    assert run(job_args(root), root)['changed'] is True
    assert path.read_text() == original
    assert systemd.mutating() == [['systemctl', 'daemon-reload']]


def test_daemon_reload_can_be_disabled(root, systemd):
    run(job_args(root, daemon_reload=False), root)
    assert ['systemctl', 'daemon-reload'] not in systemd.calls


def test_timer_disabled(root, systemd):
    run(job_args(root), root)
    systemd.calls.clear()
    result = run(job_args(root, timer_enabled=False), root)
    assert result['changed'] is True
    assert systemd.mutating() == [
        ['systemctl', 'disable', '--now', 'restic-backup-app.timer', 'restic-backup-app-check.timer'],
    ]
    systemd.calls.clear()
    assert run(job_args(root, timer_enabled=False), root)['changed'] is False


def test_job_without_restore_script(root, systemd):
    result = run(job_args(root, restore_script=None, extra_jobs=[]), root)
    assert result['restore_script'] is None
    assert tree(root) == ['state/restic-backup-app.json', 'units/restic-backup-app.service', 'units/restic-backup-app.timer']


def test_absent_removes_everything(root, systemd):
    run(job_args(root), root)
    (root / 'state' / 'other-job.json').write_text('{}')
    systemd.calls.clear()
    result = run({'name': 'restic-backup-app', 'state': 'absent', 'unit_dir': str(root / 'units'),
                  'script_dir': str(root / 'bin'), 'state_dir': str(root / 'state')}, root, diff=True)
    assert result['changed'] is True
    assert tree(root) == ['state/other-job.json']
    assert sorted(result['timers']) == sorted(TIMERS)
    assert len(result['diff']) == 5 and all(entry['after'] == '' for entry in result['diff'])
    assert sorted(systemd.mutating()) == sorted([
        ['systemctl', 'disable', '--now', 'restic-backup-app.timer'],
        ['systemctl', 'disable', '--now', 'restic-backup-app-check.timer'],
        ['systemctl', 'daemon-reload'],
    ])


def test_absent_twice_and_state_dir_cleanup(root, systemd):
    run(job_args(root), root)
    absent = job_args(root, state='absent')
    assert run(absent, root)['changed'] is True
    assert not (root / 'state').exists()
    systemd.calls.clear()
    assert run(absent, root)['changed'] is False
    assert systemd.mutating() == []


def test_absent_in_check_mode_keeps_files(root, systemd):
    run(job_args(root), root)
    systemd.calls.clear()
    result = run(job_args(root, state='absent'), root, check=True)
    assert result['changed'] is True
    assert tree(root) == ALL_FILES
    assert systemd.mutating() == []


def test_absent_without_manifest_removes_only_the_main_pair(root, systemd):
    (root / 'units').mkdir()
    for name in ('restic-backup-app.service', 'restic-backup-app.timer', 'restic-backup-app-offsite.service'):
        unit(root, name).write_text('x')
    result = run(job_args(root, state='absent'), root)
    assert result['changed'] is True
    assert tree(root) == ['units/restic-backup-app-offsite.service']


def test_corrupt_manifest_fails(root, systemd):
    (root / 'state').mkdir()
    (root / 'state' / 'restic-backup-app.json').write_text('[1, 2')
    with pytest.raises(SystemExit) as info:
        run(job_args(root), root)
    assert 'is not readable JSON' in info.value.result['msg']


@pytest.mark.parametrize('changes, words', [
    ({'name': '../evil'}, "name '../evil' does not match"),
    ({'name': '-dash'}, 'does not match'),
    ({'user': 'Root'}, "user 'Root' does not match"),
    ({'exec_start': [['restic', 'backup']]}, 'exec_start[0][0] must be an absolute path'),
    ({'exec_start': [[]]}, 'exec_start[0] must be a non-empty list of strings'),
    ({'exec_start': [['/bin/echo', 5]]}, 'must be a non-empty list of strings'),
    ({'exec_start': []}, 'exec_start needs at least one command'),
    ({'environment': {'BAD-NAME': 'x'}}, "environment variable 'BAD-NAME'"),
    ({'credentials': {'pass': 'relative/path'}}, "path of credential 'pass'"),
    ({'credentials': {'pass': '/with space'}}, "path of credential 'pass'"),
    ({'credentials': {'a:b': '/x'}}, "credential name 'a:b'"),
    ({'nice': 20}, 'nice must be between -20 and 19'),
    ({'io_scheduling_priority': 8}, 'io_scheduling_priority must be between 0 and 7'),
    ({'randomized_delay_sec': -1}, 'randomized_delay_sec must not be negative'),
    ({'read_write_paths': ['srv/backup']}, 'read_write_paths must be absolute paths'),
    ({'after': ['postgresql service']}, 'after unit'),
    ({'restore_script': {'name': 'bin/restore', 'content': 'x'}}, "restore_script.name 'bin/restore'"),
    ({'description': 'two\nlines'}, 'description must be a single line'),
    ({'extra_jobs': [{'suffix': 'check', 'exec_start': [['/bin/true']], 'on_calendar': 'weekly'}] * 2}, "suffix 'check' is used twice"),
    ({'extra_jobs': [{'suffix': 'a/b', 'exec_start': [['/bin/true']], 'on_calendar': 'weekly'}]}, "extra_jobs suffix 'a/b'"),
    ({'extra_jobs': [{'suffix': 'x', 'exec_start': [['true']], 'on_calendar': 'weekly'}]}, 'extra_jobs[x].exec_start[0][0]'),
    ({'extra_jobs': [{'suffix': 'x', 'exec_start': [['/bin/true']], 'on_calendar': 'weekly', 'user': 'A'}]}, "user 'A'"),
    ({'exec_start': OMIT}, 'state is present but all of the following are missing: exec_start'),
    ({'on_failure': {'exec_start': [['notify']]}}, 'on_failure.exec_start[0][0]'),
    ({'on_failure': {'exec_start': []}}, 'on_failure.exec_start needs at least one command'),
    ({'hooks': {'finish': [['finished']]}}, 'hooks.finish[0][0] must be an absolute path'),
    ({'timeout_sec': 0}, 'timeout_sec must be at least 1'),
])
def test_invalid_options_fail_without_writing(root, systemd, changes, words):
    with pytest.raises(SystemExit) as info:
        run(job_args(root, **changes), root)
    assert words in info.value.result['msg']
    assert tree(root) == []
    assert systemd.mutating() == []


def test_extra_job_overrides(root, systemd):
    extra = {'suffix': 'prune', 'exec_start': [['/usr/bin/restic', 'forget', '--prune']], 'on_calendar': 'Sun 04:00',
             'description': 'prune app', 'user': 'root'}
    run(job_args(root, extra_jobs=[extra], nice=5, io_scheduling_class='best-effort', io_scheduling_priority=4), root)
    text = unit(root, 'restic-backup-app-prune.service').read_text()
    assert 'Description=prune app\n' in text and 'User=root\n' in text and 'Nice=5\n' in text
    assert 'Description=Timer of prune app\n' in unit(root, 'restic-backup-app-prune.timer').read_text()


NOTIFY = {'exec_start': [['/bin/bash', '/usr/local/bin/restic-restore-app', 'notify']]}


def test_on_failure_adds_a_notify_service_that_every_service_names(root, systemd):
    result = run(job_args(root, on_failure=NOTIFY), root)
    assert result['changed'] is True
    assert tree(root) == sorted(ALL_FILES + ['units/restic-backup-app-notify.service'])
    for name in ('restic-backup-app.service', 'restic-backup-app-check.service'):
        assert 'OnFailure=restic-backup-app-notify.service\n' in unit(root, name).read_text(), name
    notify = unit(root, 'restic-backup-app-notify.service').read_text()
    assert 'ExecStart=/bin/bash /usr/local/bin/restic-restore-app notify\n' in notify
    assert 'User=root\n' in notify and 'ProtectSystem' not in notify and 'OnFailure' not in notify
    assert 'restic-backup-app-notify.service' in systemd.verified
    # no timer of its own: only the two timers are enabled
    assert sorted(result['timers']) == sorted(TIMERS)
    # idempotent, and dropping on_failure removes the unit and the OnFailure= lines
    assert run(job_args(root, on_failure=NOTIFY), root)['changed'] is False
    assert run(job_args(root), root)['changed'] is True
    assert tree(root) == ALL_FILES
    assert 'OnFailure' not in unit(root, 'restic-backup-app.service').read_text()


def test_absent_removes_the_notify_service(root, systemd):
    run(job_args(root, on_failure=NOTIFY), root)
    run({'name': 'restic-backup-app', 'state': 'absent', 'unit_dir': str(root / 'units'),
         'script_dir': str(root / 'bin'), 'state_dir': str(root / 'state')}, root)
    assert tree(root) == []


HOOKS = {'start': [['/bin/bash', '/usr/local/bin/restic-restore-app', 'started']],
         'finish': [['/bin/bash', '/usr/local/bin/restic-restore-app', 'finished']]}


def test_hooks_and_timeout(root, systemd):
    run(job_args(root, hooks=HOOKS, timeout_sec=900), root)
    main = unit(root, 'restic-backup-app.service').read_text()
    assert 'ExecStartPre=-+/bin/bash /usr/local/bin/restic-restore-app started\n' in main
    assert 'ExecStopPost=-+/bin/bash /usr/local/bin/restic-restore-app finished\n' in main
    # The timeout holds for every run, the hooks report on the backup only.
    check = unit(root, 'restic-backup-app-check.service').read_text()
    assert 'TimeoutStartSec=900\n' in main and 'TimeoutStartSec=900\n' in check
    assert 'ExecStartPre' not in check and 'ExecStopPost' not in check
    assert run(job_args(root, hooks=HOOKS, timeout_sec=900), root)['changed'] is False
    assert run(job_args(root), root)['changed'] is True
    assert 'ExecStopPost' not in unit(root, 'restic-backup-app.service').read_text()


def list_args(root, *jobs, **shared):
    args = {'jobs': list(jobs), 'unit_dir': str(root / 'units'), 'script_dir': str(root / 'bin'),
            'state_dir': str(root / 'state')}
    args.update(shared)
    return args


def one_job(root, name, **changes):
    """A job of the list form: the per-job options of job_args, renamed."""
    args = job_args(root, name=name, restore_script={'name': name.replace('backup', 'restore'), 'content': '#!/bin/sh\n'},
                    **changes)
    return {key: value for key, value in args.items() if key not in ('unit_dir', 'script_dir', 'state_dir')}


def test_list_installs_every_job_with_one_verify_and_one_reload(root, systemd):
    result = run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop')), root)
    assert result['changed'] is True
    assert [job['name'] for job in result['jobs']] == ['restic-backup-app', 'restic-backup-shop']
    assert [job['backup_service'] for job in result['jobs']] == ['restic-backup-app.service', 'restic-backup-shop.service']
    assert all(job['changed'] for job in result['jobs'])
    assert len(tree(root)) == 2 * len(ALL_FILES)
    assert len(systemd.verify_calls()) == 1
    assert sorted(systemd.verified) == sorted(
        f'restic-backup-{name}{suffix}' for name in ('app', 'shop')
        for suffix in ('.service', '.timer', '-check.service', '-check.timer'))
    mutating = systemd.mutating()
    assert mutating.count(['systemctl', 'daemon-reload']) == 1
    # the timers start only after the reload, which makes their units known
    # (one enable for the timers of both jobs), and their states came from one systemctl show
    assert mutating == [['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--now'] + [
        f'restic-backup-{name}{suffix}' for name in ('app', 'shop') for suffix in ('.timer', '-check.timer')]]
    assert [call[1] for call in systemd.calls if call[0] == 'systemctl' and call[1].startswith('is-')] == []
    assert len([call for call in systemd.calls if call[:2] == ['systemctl', 'show']]) == 1
    # each calendar expression is checked once for the whole run
    calendars = [call[2] for call in systemd.calls if call[:2] == ['systemd-analyze', 'calendar']]
    assert calendars == ['*-*-* 02:30:00', 'weekly']


def test_list_second_run_reloads_nothing(root, systemd):
    args = list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop'))
    run(args, root)
    systemd.calls.clear()
    result = run(args, root, diff=True)
    assert result['changed'] is False and not any(job['changed'] for job in result['jobs'])
    assert result['diff'] == []
    assert systemd.mutating() == [] and systemd.verify_calls() == []


def test_list_one_changed_job_reloads_once_and_diffs_only_it(root, systemd):
    run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop')), root)
    systemd.calls.clear()
    result = run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop', on_calendar='hourly')),
                 root, diff=True)
    assert [job['changed'] for job in result['jobs']] == [False, True]
    assert [entry['after_header'] for entry in result['diff']] == [str(unit(root, 'restic-backup-shop.timer'))]
    assert systemd.mutating() == [['systemctl', 'daemon-reload']]
    assert [os.path.basename(path) for path in systemd.verify_calls()[0][2:]] == [
        'restic-backup-shop.service', 'restic-backup-shop.timer', 'restic-backup-shop-check.service',
        'restic-backup-shop-check.timer']


def test_list_check_mode_writes_nothing(root, systemd):
    result = run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop')), root,
                 check=True, diff=True)
    assert result['changed'] is True and tree(root) == []
    assert systemd.mutating() == [] and systemd.verify_calls() == []
    assert len(result['diff']) == 2 * (len(ALL_FILES) - 1)


def test_list_absent_job_and_present_job_share_the_reload(root, systemd):
    run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop')), root)
    systemd.calls.clear()
    result = run(list_args(root, one_job(root, 'restic-backup-app'), {'name': 'restic-backup-shop', 'state': 'absent'}),
                 root)
    assert [job['changed'] for job in result['jobs']] == [False, True]
    assert result['jobs'][1]['restore_script'] is None
    assert not any('shop' in path for path in tree(root))
    assert systemd.mutating().count(['systemctl', 'daemon-reload']) == 1


def test_list_failed_verification_changes_no_job(root, systemd):
    systemd.verify_rc = 1
    with pytest.raises(SystemExit) as info:
        run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop')), root)
    assert info.value.result['changed'] is False and tree(root) == []


@pytest.mark.parametrize('args, words', [
    ({'jobs': [{'name': 'a', 'exec_start': [['/bin/true']]}, {'name': 'a', 'exec_start': [['/bin/true']]}]},
     'the names a are used more than once'),
    ({'jobs': [{'name': 'a'}]}, 'state is present but all of the following are missing: exec_start'),
    ({'jobs': [{'name': 'a', 'exec_start': [['/bin/true']]}], 'prune': ['']}, "prune '' does not match"),
    ({'jobs': [{'name': 'a', 'exec_start': [['/bin/true']]}], 'prune': ['restic-', '../restic-']}, "prune '../restic-' does not match"),
])
def test_list_option_errors(root, systemd, args, words):
    with pytest.raises(SystemExit) as info:
        run(dict(args, unit_dir=str(root / 'units'), state_dir=str(root / 'state')), root)
    assert words in info.value.result['msg']
    assert tree(root) == []


def test_list_a_job_failing_midway_still_reloads_what_the_jobs_before_it_wrote(root, systemd, monkeypatch):
    # The second job's files cannot be written (a full disk, say), after the first job wrote its units.
    from ansible_collections.selfhost.backup.plugins.module_utils import _job_files
    write_atomic = _job_files.write_atomic

    def failing_for_shop(mover, item):
        if 'shop' in item.path:
            raise OSError(28, 'No space left on device')
        write_atomic(mover, item)

    monkeypatch.setattr(_job_files, 'write_atomic', failing_for_shop)
    with pytest.raises(SystemExit) as info:
        run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop')), root)
    assert info.value.result['changed'] is True and 'No space left' in info.value.result['msg']
    assert unit(root, 'restic-backup-app.service').exists()
    # Without this reload the next converge would find app's units unchanged and never tell systemd.
    assert systemd.mutating() == [['systemctl', 'daemon-reload']]


def test_the_single_job_form_is_gone(root, systemd):
    args = {'name': 'restic-backup-app', 'exec_start': [['/bin/true']], 'state_dir': str(root / 'state')}
    with patch_module_args(dict(args, _ansible_remote_tmp=str(root / 'remote-tmp'))):
        with pytest.raises(SystemExit) as info:
            backup_jobs.main()
    assert info.value.code == 1
    assert info.value.result['msg'] == 'missing required arguments: jobs'
    assert tree(root) == [] and systemd.calls == []


def install_family(root):
    """app and shop of restic, and a borg job that a restic prune must never touch."""
    run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-backup-shop'),
                  one_job(root, 'borg-backup-app')), root)


def test_prune_removes_the_unlisted_jobs_of_the_family_only(root, systemd):
    install_family(root)
    systemd.calls.clear()
    result = run(list_args(root, one_job(root, 'restic-backup-app'), prune=['restic-backup-']), root, diff=True)
    assert result['changed'] is True and result['pruned'] == ['restic-backup-shop']
    assert [(job['name'], job['changed']) for job in result['jobs']] == [
        ('restic-backup-app', False), ('restic-backup-shop', True)]
    assert not any('shop' in path for path in tree(root))
    assert 'units/borg-backup-app.service' in tree(root) and 'bin/borg-restore-app' in tree(root)
    assert sorted(systemd.mutating()) == sorted([
        ['systemctl', 'disable', '--now', 'restic-backup-shop.timer'],
        ['systemctl', 'disable', '--now', 'restic-backup-shop-check.timer'],
        ['systemctl', 'daemon-reload'],
    ])
    assert sorted(entry['before_header'] for entry in result['diff']) == sorted(
        str(root / path) for path in ('bin/restic-restore-shop', 'units/restic-backup-shop.service',
                                      'units/restic-backup-shop.timer', 'units/restic-backup-shop-check.service',
                                      'units/restic-backup-shop-check.timer'))
    again = run(list_args(root, one_job(root, 'restic-backup-app'), prune=['restic-backup-']), root)
    assert again['changed'] is False and again['pruned'] == []


def test_prune_in_check_mode_reports_and_keeps_everything(root, systemd):
    install_family(root)
    before = {path: (root / path).read_text() for path in tree(root)}
    systemd.calls.clear()
    result = run(list_args(root, prune=['restic-backup-']), root, check=True)
    assert result['changed'] is True and result['pruned'] == ['restic-backup-app', 'restic-backup-shop']
    assert {path: (root / path).read_text() for path in tree(root)} == before
    assert systemd.mutating() == []


def test_an_empty_list_removes_nothing_without_prune_and_the_whole_family_with_it(root, systemd):
    install_family(root)
    assert run(list_args(root), root)['changed'] is False
    result = run(list_args(root, prune=['restic-backup-']), root)
    assert result['pruned'] == ['restic-backup-app', 'restic-backup-shop']
    assert [path for path in tree(root) if 'restic' in path] == []
    assert 'state/borg-backup-app.json' in tree(root)


def test_prune_without_a_state_dir_has_nothing_to_prune(root, systemd):
    result = run(list_args(root, one_job(root, 'restic-backup-app'), prune=['restic-backup-']), root)
    assert result['changed'] is True and result['pruned'] == []


def test_a_failed_verification_prunes_nothing(root, systemd):
    install_family(root)
    before = tree(root)
    systemd.verify_rc = 1
    systemd.calls.clear()
    with pytest.raises(SystemExit) as info:
        run(list_args(root, one_job(root, 'restic-backup-app', on_calendar='hourly'), prune=['restic-backup-']), root)
    assert info.value.result['changed'] is False and tree(root) == before
    assert systemd.mutating() == []


def test_prune_takes_several_families_and_a_prefix_is_no_pattern(root, systemd):
    run(list_args(root, one_job(root, 'restic-backup-app'), one_job(root, 'restic-drill-app'),
                  one_job(root, 'restic-backup-app2'), one_job(root, 'borg-backup-app')), root)
    result = run(list_args(root, one_job(root, 'restic-backup-app2'), prune=['restic-backup-', 'restic-drill-', 'r.']),
                 root)
    assert result['pruned'] == ['restic-backup-app', 'restic-drill-app']
    assert sorted(path for path in tree(root) if path.startswith('state/')) == [
        'state/borg-backup-app.json', 'state/restic-backup-app2.json']


# Hostile review (issue 16): what prune must not do.

def test_prune_never_removes_what_a_wanted_job_installs(root, systemd):
    """Instance app-check goes and instance app with a check job comes in the same run (the controller's unit
    collision check sees only the instances of one run): the pruned job's units are the wanted job's extra units."""
    run(list_args(root, one_job(root, 'restic-backup-app-check', extra_jobs=[])), root)
    systemd.calls.clear()
    result = run(list_args(root, one_job(root, 'restic-backup-app'), prune=['restic-backup-']), root)
    assert result['pruned'] == ['restic-backup-app-check']
    assert 'units/restic-backup-app-check.service' in tree(root)
    assert 'units/restic-backup-app-check.timer' in tree(root)
    assert 'restic-backup-app-check.timer' in systemd.enabled
    assert ['systemctl', 'disable', '--now', 'restic-backup-app-check.timer'] not in systemd.mutating()
    assert not any('restic-restore-app-check' in path for path in tree(root))
    assert run(list_args(root, one_job(root, 'restic-backup-app'), prune=['restic-backup-']), root)['changed'] is False


@pytest.mark.parametrize('entry, kind', [
    ('restic-backup-app copy.json', 'file'),  # a copy an administrator made by hand
    ('restic-backup-odd.json', 'directory'),
])
def test_prune_ignores_what_is_no_manifest_of_this_module(root, systemd, entry, kind):
    """A name the module never writes, or a directory, is no job: it must not stop every later run."""
    run(list_args(root, one_job(root, 'restic-backup-app')), root)
    path = root / 'state' / entry
    if kind == 'directory':
        path.mkdir()
    else:
        path.write_text((root / 'state' / 'restic-backup-app.json').read_text())
    result = run(list_args(root, one_job(root, 'restic-backup-app'), prune=['restic-backup-']), root)
    assert result['changed'] is False and result['pruned'] == []
    assert path.exists() and 'units/restic-backup-app.service' in tree(root)


def test_a_timer_that_fails_to_start_is_named_after_the_batch_fails(root, systemd, monkeypatch):
    plain = systemd._systemctl

    def refusing(command, unit):
        if command == 'enable' and unit == 'restic-backup-app-check.timer':
            return 1, '', 'Failed to start restic-backup-app-check.timer: Unit is masked.'
        return plain(command, unit)

    def run_systemctl(argv, original=systemd.run):
        if argv[:2] == ['systemctl', 'enable'] and 'restic-backup-app-check.timer' in argv:
            systemd.calls.append(list(argv))
            if len(argv) > 4:
                return 1, '', 'Failed to enable units: Unit is masked.'
            return refusing('enable', argv[-1])
        return original(argv)

    monkeypatch.setattr(systemd, 'run', run_systemctl)
    with pytest.raises(SystemExit) as info:
        run(job_args(root), root)
    result = info.value.result
    assert result['failed'] is True
    assert 'systemctl enable --now restic-backup-app-check.timer failed (rc=1): Failed to start ' in result['msg']
    assert [call for call in systemd.mutating() if call[1] == 'enable'] == [
        ['systemctl', 'enable', '--now', 'restic-backup-app.timer', 'restic-backup-app-check.timer'],
        ['systemctl', 'enable', '--now', 'restic-backup-app.timer'],
        ['systemctl', 'enable', '--now', 'restic-backup-app-check.timer']]


def test_timer_states_come_from_systemctl_show_whatever_the_order_of_its_blocks(root, systemd):
    from ansible_collections.selfhost.backup.plugins.module_utils._job_files import Systemctl

    class Show:
        def __init__(self, out, rc=0):
            self.out, self.rc, self.calls = out, rc, []

        def run(self, argv):
            self.calls.append(argv)
            if argv[1] == 'show':
                return self.rc, self.out, ''
            return (0 if argv[-1] == 'c.timer' else 3), '', ''

    out = ('Id=b.timer\nUnitFileState=disabled\nActiveState=active\n\n'
           'ActiveState=inactive\nUnitFileState=static\nId=a.timer\n')
    runner = Show(out)
    assert Systemctl(runner).states(['a.timer', 'b.timer', 'c.timer']) == {
        'a.timer': (True, False), 'b.timer': (False, True), 'c.timer': (True, True)}
    # c.timer was not in the answer: probed on its own
    assert [call[1:] for call in runner.calls[1:]] == [['is-enabled', '--quiet', 'c.timer'], ['is-active', '--quiet', 'c.timer']]
    assert Systemctl(Show('', rc=1)).states(['a.timer']) == {'a.timer': (False, False)}
    assert Systemctl(runner).states([]) == {}
