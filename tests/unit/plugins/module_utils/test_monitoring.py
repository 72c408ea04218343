# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""settings.monitoring: the root hooks of the job script (metrics, pings) run by bash with a fake systemctl and
curl, the units they become, and where the ping URL goes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest
from job_library import make_library

from ansible_collections.selfhost.backup.plugins.module_utils import (
    _job_options, _job_script, _layout, _monitoring, _systemd_units)
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

LAYOUT = _layout.Layout('restic', 'app')
URL = 'https://hc.example.invalid/ping/0f6c3a2e-secret-uuid'
STARTED = 1_700_000_000

# The provider half: a backup that records 4096 added bytes, an instance with 7 snapshots.
STAND_IN = '''provider_snapshots() { :; }
provider_snapshots_json() { :; }
provider_exec() { :; }
readonly EXEC_EXAMPLE=stats
provider_has_snapshot() { :; }
provider_dump() { :; }
provider_dump_size() { :; }
provider_resolve() { printf '%s\n' "$1"; }
provider_newest_json() { :; }
provider_retention() { :; }
provider_snapshot_count() { echo 7; }
provider_backup() { record_backup 4096; }
'''

# systemctl show --timestamp=unix -P InactiveExitTimestamp <unit>: when the run started.
FAKE_SYSTEMCTL = f'#!/bin/sh\necho "$*" >>"$FAKE_LOG/systemctl"\necho @{STARTED}\n'
# Records argv and the config it read on stdin; FAKE_CURL_RC makes it fail like an unreachable monitor.
FAKE_CURL = '''#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_LOG/curl.argv"
cat >>"$FAKE_LOG/curl.config"
exit "${FAKE_CURL_RC:-0}"
'''

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='the hooks refuse to run as anyone but root (as systemd runs them)')


@pytest.fixture(scope='module')
def library():
    directory = make_library({'restic.sh': STAND_IN})
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def world(tmp_path, library):
    (tmp_path / 'lib').symlink_to(library)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('systemctl', FAKE_SYSTEMCTL), ('curl', FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / 'log').mkdir()
    (tmp_path / 'cache').mkdir()
    (tmp_path / 'ping_url').write_text(URL)
    return tmp_path


def script(world, metrics=True, ping=True, metrics_file=None):
    if metrics_file is None:
        metrics_file = str(world / 'metrics' / 'restic-backup-app.prom') if metrics else ''
    watch = _monitoring.Monitoring(metrics_file=metrics_file, ping_url_file=str(world / 'ping_url') if ping else '',
                                   ping_timeout=4, ping_retries=2)
    spec = _job_script.ScriptSpec(
        layout=LAYOUT, user='root', backup_name='db.sql', backup_cmd='true', restore_cmd='true',
        credentials={'passphrase': str(world / 'passphrase')}, env_names=(), stop_units=(), provider_data=(),
        monitoring=watch, library=os.readlink(world / 'lib'))
    path = world / 'job'
    path.write_text(_job_script.render_script(spec))
    return path


def run(world, path, step, **env_changes):
    env = {'PATH': f'{world / "bin"}:{os.environ["PATH"]}', 'FAKE_LOG': str(world / 'log'),
           'CACHE_DIRECTORY': str(world / 'cache')}
    if step == 'backup':
        env['CREDENTIALS_DIRECTORY'] = str(world)
    env.update(env_changes)
    result = subprocess.run(['bash', str(path), step], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result


def finished(world, path, result='success', code='exited', status='0', **env):
    return run(world, path, 'finished', SERVICE_RESULT=result, EXIT_CODE=code, EXIT_STATUS=status, **env)


def metrics(world):
    """The textfile as {metric name: value}, after checking every line is in the text exposition format."""
    values = {}
    for line in (world / 'metrics' / 'restic-backup-app.prom').read_text().splitlines():
        if line.startswith('#'):
            assert re.match(r'^# (HELP|TYPE) selfhost_backup_[a-z_]+ .+$', line), line
            continue
        match = re.match(r'^(selfhost_backup_[a-z_]+)\{provider="restic",name="app"\} ([0-9]+)$', line)
        assert match, line
        values[match.group(1)] = int(match.group(2))
    return values


def pings(world):
    """The URLs curl was given, in order (read from its --config on stdin)."""
    config = (world / 'log' / 'curl.config').read_text()
    return re.findall(r'^url = "(.*)"$', config, re.M)


@needs_root
def test_a_good_run_writes_every_metric_and_pings_start_and_success(world):
    path = script(world)
    run(world, path, 'started')
    run(world, path, 'backup')
    before = int(time.time())
    finished(world, path)
    values = metrics(world)
    assert values['selfhost_backup_last_attempt_timestamp_seconds'] == STARTED
    assert values['selfhost_backup_last_exit_status'] == 0
    assert before <= values['selfhost_backup_last_success_timestamp_seconds'] <= int(time.time())
    assert values['selfhost_backup_last_duration_seconds'] == values['selfhost_backup_last_success_timestamp_seconds'] - STARTED
    assert values['selfhost_backup_last_added_bytes'] == 4096
    assert values['selfhost_backup_snapshots'] == 7
    assert 'InactiveExitTimestamp restic-backup-app.service' in (world / 'log' / 'systemctl').read_text()
    assert pings(world) == [f'{URL}/start', URL]
    # Replaced atomically and readable by the exporter; no temporary file left behind.
    assert os.listdir(world / 'metrics') == ['restic-backup-app.prom']
    assert (world / 'metrics' / 'restic-backup-app.prom').stat().st_mode & 0o777 == 0o644


@needs_root
def test_the_ping_url_never_reaches_a_command_line(world):
    path = script(world)
    run(world, path, 'started')
    finished(world, path)
    argv = (world / 'log' / 'curl.argv').read_text()
    assert 'secret-uuid' not in argv and 'hc.example' not in argv
    assert '--config -' in argv and '--max-time 4' in argv and '--retry 2' in argv


@needs_root
def test_a_failed_run_keeps_the_last_success_and_pings_fail(world):
    path = script(world)
    run(world, path, 'started')
    run(world, path, 'backup')
    finished(world, path)
    good = metrics(world)
    run(world, path, 'started')  # the failed run never gets to record_backup
    assert not (world / 'cache' / 'last-backup').exists()
    finished(world, path, result='exit-code', status='3')
    values = metrics(world)
    assert values['selfhost_backup_last_exit_status'] == 3
    for kept in ('last_success_timestamp_seconds', 'last_added_bytes', 'snapshots'):
        assert values[f'selfhost_backup_{kept}'] == good[f'selfhost_backup_{kept}']
    assert pings(world)[-2:] == [f'{URL}/start', f'{URL}/fail']


@needs_root
@pytest.mark.parametrize('result, code, status, expected', [
    ('signal', 'killed', 'KILL', 137),
    ('core-dump', 'dumped', 'SEGV', 139),
    ('timeout', 'killed', 'TERM', 143),
    ('resources', '', '', 1),
])
def test_the_exit_status_of_a_killed_or_unstarted_run(world, result, code, status, expected):
    path = script(world)
    finished(world, path, result=result, code=code, status=status)
    values = metrics(world)
    assert values['selfhost_backup_last_exit_status'] == expected
    # Never a success so far: no success time, no figures, rather than zeros that read as "1970".
    assert 'selfhost_backup_last_success_timestamp_seconds' not in values
    assert 'selfhost_backup_snapshots' not in values
    assert pings(world) == [f'{URL}/fail']


@needs_root
def test_a_monitor_that_is_down_fails_nothing(world):
    path = script(world)
    run(world, path, 'started', FAKE_CURL_RC='7')
    done = finished(world, path, FAKE_CURL_RC='7')
    assert 'ping failed (ignored' in done.stderr
    assert metrics(world)['selfhost_backup_last_exit_status'] == 0


@needs_root
def test_without_metrics_and_ping_the_hooks_do_nothing(world):
    path = script(world, metrics=False, ping=False)
    run(world, path, 'started')
    run(world, path, 'backup')
    finished(world, path)
    assert not (world / 'metrics').exists()
    assert not (world / 'log' / 'curl.argv').exists()
    # No figures are gathered for nobody: no extra listing of the repository.
    assert not (world / 'cache' / 'last-backup').exists()


def test_the_hooks_refuse_anyone_but_root(world):
    # The script is read on stdin: the test's temporary directory is root-only.
    drop = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] if os.geteuid() == 0 else []
    with open(script(world), encoding='utf-8') as text:
        result = subprocess.run(drop + ['bash', '-s', 'finished'], stdin=text, capture_output=True, text=True,
                                env={'PATH': os.environ['PATH']}, check=False)
    assert result.returncode == 1 and 'run this as root' in result.stderr


def test_hooks_become_privileged_ignored_exec_lines_of_the_backup_service_only():
    watch = _monitoring.Monitoring(metrics_file='/var/lib/prometheus/node-exporter/restic-backup-app.prom')
    spec = _job_script.ScriptSpec(layout=LAYOUT, user='postgres', backup_name='db.sql', backup_cmd='true', restore_cmd='true',
                                  credentials={}, env_names=(), stop_units=(), provider_data=(), monitoring=watch)
    options = _job_options.job_options(spec, _job_options.Schedule(), extra_jobs=[('check', 'weekly')])
    assert options['hooks'] == {'start': [['/bin/bash', '/usr/local/bin/restic-restore-app', 'started']],
                                'finish': [['/bin/bash', '/usr/local/bin/restic-restore-app', 'finished']]}
    service = _systemd_units.render_service(_systemd_units.ServiceSpec(
        description='d', exec_start=(('/bin/true',),), start_hooks=(('/bin/bash', '/s', 'started'),),
        finish_hooks=(('/bin/bash', '/s', 'finished'),)))
    assert 'ExecStartPre=-+/bin/bash /s started\n' in service
    assert 'ExecStopPost=-+/bin/bash /s finished\n' in service
    # Without monitoring there are no hooks at all.
    plain = dataclasses.replace(spec, monitoring=_monitoring.Monitoring())
    assert 'hooks' not in _job_options.job_options(plain, _job_options.Schedule())


def test_monitoring_settings_and_where_the_ping_url_goes():
    schema = _contract.load_provider_schema('restic')
    settings = _contract.fill_defaults({'monitoring': {'metrics_directory': '/var/lib/prometheus/node-exporter',
                                                       'ping_url': URL, 'ping_timeout': 5, 'ping_retries': 0}}, schema)
    watch = _monitoring.monitoring(LAYOUT, settings)
    assert watch.metrics_file == '/var/lib/prometheus/node-exporter/restic-backup-app.prom'
    assert watch.ping_url_file == '/etc/selfhost-backup/restic/app/ping_url'
    assert (watch.ping_timeout, watch.ping_retries) == (5, 0)
    assert URL not in json.dumps(dataclasses.asdict(watch))
    assert _monitoring.monitoring_secret_files(LAYOUT, settings) == [('/etc/selfhost-backup/restic/app/ping_url', URL)]
    unset = _contract.fill_defaults({}, schema)
    assert _monitoring.monitoring_secret_files(LAYOUT, unset) == []
    assert not _monitoring.monitoring(LAYOUT, unset).has_hooks
    assert (_monitoring.monitoring(LAYOUT, unset).late_after, _monitoring.monitoring(LAYOUT, unset).ping_retries) == (93600, 3)


@pytest.mark.parametrize('key, value, rule', [
    ('ping_url', 'ftp://example.invalid/x', 'pattern'),
    ('ping_url', 'https://example.invalid/a b', 'pattern'),
    ('ping_timeout', 0, 'minimum'),
    ('ping_retries', 11, 'maximum'),
    ('metrics_directory', 'relative/dir', 'pattern'),
])
def test_bad_monitoring_settings_are_refused_naming_the_field(key, value, rule):
    schema = _contract.load_provider_schema('restic')
    settings = {'repository': {'path': '/srv/r'}, 'passphrase': 'pw', 'monitoring': {key: value}}
    with pytest.raises(_contract.ContractViolation) as caught:
        _contract.validate_settings(settings, schema, 'app')
    message = str(caught.value)
    assert f'monitoring.{key}' in message and rule in message
    if key == 'ping_url':
        assert str(value) not in message  # writeOnly: a URL is a secret, never quoted back


OTHER_UID = 54321


@needs_root
def test_metrics_in_another_user_s_directory_are_written_as_that_user(world):
    """Debian's prometheus owns its directory: root must not write there, where that user could swap the
    temporary file for a link to any file."""
    top = tempfile.mkdtemp(dir='/tmp')  # pytest's own directories are root's alone: the user could not reach it
    try:
        os.chmod(top, 0o755)
        directory = os.path.join(top, 'metrics')
        os.mkdir(directory, 0o755)
        os.chown(directory, OTHER_UID, OTHER_UID)
        metrics_file = os.path.join(directory, 'restic-backup-app.prom')
        finished(world, script(world, ping=False, metrics_file=metrics_file))
        written = os.stat(metrics_file)
        assert (written.st_uid, written.st_mode & 0o777) == (OTHER_UID, 0o644)
        with open(metrics_file, encoding='utf-8') as handle:
            assert 'selfhost_backup_last_exit_status{provider="restic",name="app"} 0' in handle.read()
    finally:
        shutil.rmtree(top)


@needs_root
@pytest.mark.parametrize('mode, owner, expected', [
    (0o775, 0, 'can be changed by a group or by other users: no metrics written'),
    (0o777, 0, 'can be changed by a group or by other users: no metrics written'),
])
def test_metrics_are_not_written_where_others_could_swap_the_file(world, mode, owner, expected):
    (world / 'metrics').mkdir()
    os.chmod(world / 'metrics', mode)
    os.chown(world / 'metrics', owner, owner)
    path = script(world, ping=False)
    result = finished(world, path)
    assert expected in result.stderr
    assert not (world / 'metrics' / 'restic-backup-app.prom').exists()


@needs_root
def test_metrics_below_a_directory_of_another_user_are_not_written(world):
    (world / 'metrics').mkdir(mode=0o755)
    os.chown(world / 'metrics', OTHER_UID, OTHER_UID)
    nested = world / 'metrics' / 'textfiles'
    nested.mkdir(mode=0o755)
    result = finished(world, script(world, ping=False, metrics_file=str(nested / 'restic-backup-app.prom')))
    assert 'belongs to a user other than root: no metrics written below it' in result.stderr
    assert not (nested / 'restic-backup-app.prom').exists()


@needs_root
def test_a_metrics_directory_that_does_not_exist_yet_is_made_below_root_s_directories(world):
    nested = world / 'metrics' / 'node-exporter'
    result = finished(world, script(world, ping=False, metrics_file=str(nested / 'restic-backup-app.prom')))
    assert result.returncode == 0, result.stderr
    assert (nested / 'restic-backup-app.prom').exists(), result.stderr
    # The exporter runs as another user: the directories root makes must let it through.
    assert stat.S_IMODE(nested.stat().st_mode) == 0o755 and stat.S_IMODE(nested.parent.stat().st_mode) == 0o755


@needs_root
def test_below_a_directory_of_another_user_root_creates_nothing(world):
    """That user could swap what root creates or checks there for a link between two steps (mkdir, realpath,
    the write): the refusal comes before root touches anything below it."""
    (world / 'metrics').mkdir(mode=0o755)
    os.chown(world / 'metrics', OTHER_UID, OTHER_UID)
    nested = world / 'metrics' / 'textfiles'
    result = finished(world, script(world, ping=False, metrics_file=str(nested / 'restic-backup-app.prom')))
    assert f'{world / "metrics"} belongs to a user other than root: no metrics written below it' in result.stderr
    assert not nested.exists()


@needs_root
@pytest.mark.parametrize('where', ['directory of another user', 'sticky directory', 'dangling'])
def test_a_link_another_user_planted_on_the_way_does_not_lead_root_s_writes(world, where):
    """Another user who can change a directory on the way to the metrics directory (Debian's prometheus owns
    /var/lib/prometheus; anyone can add to /tmp) puts a link there to a directory only root can change: resolved,
    the chain is root's alone, but root must neither write nor create anything there."""
    top = tempfile.mkdtemp(dir='/tmp')  # pytest's own directories are root's alone: the user could not reach it
    try:
        os.chmod(top, 0o755)
        victim = os.path.join(top, 'victim')
        os.mkdir(victim, 0o700)
        holder = os.path.join(top, 'prometheus')
        os.mkdir(holder, 0o1777 if where == 'sticky directory' else 0o755)
        os.chmod(holder, 0o1777 if where == 'sticky directory' else 0o755)
        if where != 'sticky directory':
            os.chown(holder, OTHER_UID, OTHER_UID)
        link = os.path.join(holder, 'node-exporter')
        os.symlink(os.path.join(victim, 'new') if where == 'dangling' else victim, link)
        os.lchown(link, OTHER_UID, OTHER_UID)
        result = finished(world, script(world, ping=False, metrics_file=os.path.join(link, 'restic-backup-app.prom')))
        assert (f'{link} is a symbolic link in a directory that a user other than root can change: no metrics '
                'written') in result.stderr
        assert os.listdir(victim) == []
    finally:
        shutil.rmtree(top)


@needs_root
def test_a_link_only_root_could_have_made_is_followed(world):
    (world / 'textfiles').mkdir(mode=0o755)
    (world / 'metrics').symlink_to(world / 'textfiles')
    finished(world, script(world, ping=False))
    assert metrics(world)['selfhost_backup_last_exit_status'] == 0
    assert (world / 'textfiles' / 'restic-backup-app.prom').stat().st_uid == 0


def drill_finished(world, path, result='success', code='exited', status='0', **env):
    return run(world, path, 'drill-finished', SERVICE_RESULT=result, EXIT_CODE=code, EXIT_STATUS=status, **env)


BACKUP_METRICS = ('last_attempt_timestamp_seconds', 'last_duration_seconds', 'last_exit_status',
                  'last_success_timestamp_seconds', 'last_added_bytes', 'snapshots')
DRILL_METRICS = ('last_drill_success_timestamp_seconds', 'last_drill_duration_seconds', 'last_drill_exit_status')


@needs_root
def test_a_drill_writes_its_metrics_and_keeps_the_backup_s_and_the_backup_keeps_the_drill_s(world):
    path = script(world)
    run(world, path, 'started')
    run(world, path, 'backup')
    finished(world, path)
    backup = metrics(world)
    before = int(time.time())
    drill_finished(world, path)
    values = metrics(world)
    assert 'InactiveExitTimestamp restic-drill-app.service' in (world / 'log' / 'systemctl').read_text()
    assert values['selfhost_backup_last_drill_exit_status'] == 0
    assert before <= values['selfhost_backup_last_drill_success_timestamp_seconds'] <= int(time.time())
    assert values['selfhost_backup_last_drill_duration_seconds'] == (
        values['selfhost_backup_last_drill_success_timestamp_seconds'] - STARTED)
    assert {name: values[f'selfhost_backup_{name}'] for name in BACKUP_METRICS} == {
        name: backup[f'selfhost_backup_{name}'] for name in BACKUP_METRICS}
    # Every metric once, with its HELP and TYPE lines.
    text = (world / 'metrics' / 'restic-backup-app.prom').read_text()
    for name in BACKUP_METRICS + DRILL_METRICS:
        assert text.count(f'# TYPE selfhost_backup_{name} gauge\n') == 1, name
    drilled = metrics(world)
    # The next backup, failed, rewrites its own and carries the drill's over.
    run(world, path, 'started')
    finished(world, path, result='exit-code', status='2')
    values = metrics(world)
    assert values['selfhost_backup_last_exit_status'] == 2
    assert {name: values[f'selfhost_backup_{name}'] for name in DRILL_METRICS} == {
        name: drilled[f'selfhost_backup_{name}'] for name in DRILL_METRICS}
    assert os.listdir(world / 'metrics') == ['restic-backup-app.prom']


@needs_root
def test_a_failed_drill_keeps_the_last_good_one_and_pings_fail_only(world):
    path = script(world)
    drill_finished(world, path)
    good = metrics(world)
    assert not (world / 'log' / 'curl.config').exists()  # a good drill pings nothing: the monitor follows the backups
    drill_finished(world, path, result='exit-code', status='1')
    values = metrics(world)
    assert values['selfhost_backup_last_drill_exit_status'] == 1
    assert values['selfhost_backup_last_drill_success_timestamp_seconds'] == good[
        'selfhost_backup_last_drill_success_timestamp_seconds']
    assert pings(world) == [f'{URL}/fail']
    # A drill killed by its timeout.
    drill_finished(world, path, result='timeout', code='killed', status='TERM')
    assert metrics(world)['selfhost_backup_last_drill_exit_status'] == 143
    # No backup has run: no backup metric is made up.
    assert not any(name.startswith('selfhost_backup_last_') and 'drill' not in name for name in metrics(world))


@needs_root
def test_a_passed_drill_s_duration_is_its_restore_time_without_the_wait_for_the_lock(world):
    """The drill leaves the seconds it took once it held the instance lock (cache/last-drill): a drill that waited
    for a backup reports its restore time, not the unit's span. A failed drill, a link or garbage there: the
    unit's span."""
    path = script(world)
    (world / 'cache').mkdir(exist_ok=True)
    stats = world / 'cache' / 'last-drill'
    stats.write_text('seconds=7\n')
    drill_finished(world, path)
    assert metrics(world)['selfhost_backup_last_drill_duration_seconds'] == 7
    span = metrics(world)['selfhost_backup_last_drill_success_timestamp_seconds'] - STARTED
    drill_finished(world, path, result='exit-code', status='1')
    assert metrics(world)['selfhost_backup_last_drill_duration_seconds'] >= span
    for content in ('seconds=7; rm -rf /\n', 'seconds=\n'):
        stats.write_text(content)
        drill_finished(world, path)
        assert metrics(world)['selfhost_backup_last_drill_duration_seconds'] >= span, content
    stats.unlink()
    other = world / 'other'
    other.write_text('seconds=3\n')
    stats.symlink_to(other)
    drill_finished(world, path)
    assert metrics(world)['selfhost_backup_last_drill_duration_seconds'] >= span
