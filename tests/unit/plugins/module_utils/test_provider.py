# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The provider-neutral half: names, secrets layout, job script skeleton, backup_jobs options."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from job_library import job_data, make_library

from ansible_collections.selfhost.backup.plugins.module_utils import _job_data, _provider

LAYOUT = _provider.Layout('borg', 'app')


def spec(**changes):
    values = dict(
        layout=LAYOUT, user='postgres', backup_name='db.sql', backup_cmd='pg_dumpall', restore_cmd='psql',
        credentials={'passphrase': '/etc/selfhost-backup/borg/app/passphrase'}, env_names=(), stop_units=(),
        provider_data=(),
    )
    values.update(changes)
    return _provider.ScriptSpec(**values)


def test_layout_names():
    assert LAYOUT.job_name == 'borg-backup-app'
    assert LAYOUT.backup_service == 'borg-backup-app.service'
    assert LAYOUT.restore_script == 'borg-restore-app'
    assert LAYOUT.script_path == '/usr/local/bin/borg-restore-app'
    assert LAYOUT.secrets_dir == '/etc/selfhost-backup/borg/app'
    assert LAYOUT.secret_path('passphrase') == '/etc/selfhost-backup/borg/app/passphrase'


@pytest.mark.parametrize('name', ['', '../x', 'a b', '-a', 'x' * 65])
def test_layout_refuses_bad_instance_names(name):
    with pytest.raises(_provider.ProviderError):
        _provider.Layout('restic', name)


def test_secrets_inline_passphrase_and_environment():
    secrets = _provider.secrets(LAYOUT, 'pw', None, {'B': 'b', 'A': 'a'})
    assert secrets.credentials == {
        'passphrase': '/etc/selfhost-backup/borg/app/passphrase',
        'env.A': '/etc/selfhost-backup/borg/app/env.A',
        'env.B': '/etc/selfhost-backup/borg/app/env.B',
    }
    assert secrets.env_names == ('A', 'B')
    assert secrets.files == (
        ('/etc/selfhost-backup/borg/app/passphrase', 'pw'),
        ('/etc/selfhost-backup/borg/app/env.A', 'a'),
        ('/etc/selfhost-backup/borg/app/env.B', 'b'),
    )


def test_secrets_passphrase_file_is_only_referenced():
    secrets = _provider.secrets(LAYOUT, None, '/root/pass', {})
    assert secrets.credentials == {'passphrase': '/root/pass'}
    assert secrets.files == ()


@pytest.mark.parametrize('passphrase, passphrase_file', [(None, None), ('pw', '/root/pass')])
def test_secrets_need_exactly_one_passphrase(passphrase, passphrase_file):
    with pytest.raises(_provider.ProviderError, match='exactly one'):
        _provider.secrets(LAYOUT, passphrase, passphrase_file, {})


def test_secrets_refuse_bad_environment_names():
    with pytest.raises(_provider.ProviderError, match='environment variable'):
        _provider.secrets(LAYOUT, 'pw', None, {'lower-case': 'x'})


UGLY = ("printf '%s' \"$HOME\" `id`; echo 100% \\ done", "it's \"quoted\"\n\ttwo lines $(true) ${x} é", '', '-n', '*')

# A provider half that defines the interface and shows what it was given.
STAND_IN = """provider_snapshots() { printf '%s\\n' "${STAND_IN_LIST[@]}"; }
provider_has_snapshot() { :; }
provider_dump() { :; }
provider_newest_json() { :; }
provider_snapshot_count() { :; }
provider_retention() { :; }
provider_backup() { :; }
"""


def test_the_data_file_holds_every_value_verbatim_and_nothing_else():
    script = _provider.render_script(spec(
        backup_cmd=UGLY[0], restore_cmd=UGLY[1], stop_units=('a.service', 'b b.service'), env_names=('AWS_KEY',),
        notes=UGLY, provider_data=(('STAND_IN_LIST', list(UGLY)), ('STAND_IN_TEXT', UGLY[1]))))
    assert script.startswith('#!/bin/bash\n') and script.endswith('source "$LIBRARY/job.sh"\n')
    # Assignments only: without its last line, the file runs no command (no PATH, no output, no error).
    bare = subprocess.run([shutil.which('bash'), '-euc', script.removesuffix('source "$LIBRARY/job.sh"\n')], env={'PATH': ''},
                          capture_output=True, text=True, check=False)
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, '', '')
    data = job_data(script)
    assert data['BACKUP_CMD'] == UGLY[0] and data['RESTORE_CMD'] == UGLY[1]
    assert data['STOP_UNITS'] == ['a.service', 'b b.service'] and data['ENV_SECRETS'] == ['AWS_KEY']
    assert data['SECRET_FILES'] == {'passphrase': '/etc/selfhost-backup/borg/app/passphrase'}
    assert data['NOTES'] == list(UGLY) and data['STAND_IN_LIST'] == list(UGLY) and data['STAND_IN_TEXT'] == UGLY[1]
    assert data['LIBRARY'] == '/usr/local/lib/selfhost-backup' and data['MAINTENANCE'] == ['backup']
    assert list(data)[:len(_provider.JOB_DATA)] == list(_provider.JOB_DATA)


def test_the_script_runs_the_static_program_with_its_data(tmp_path):
    library = make_library({'borg.sh': STAND_IN})
    try:
        path = tmp_path / 'script'
        path.write_text(_provider.render_script(spec(
            stop_units=('a.service', 'b.service'), notes=('a note',), library=library,
            provider_data=(('STAND_IN_LIST', list(UGLY)),))))
        helped = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert helped.returncode == 0, helped.stderr
        assert 'borg-restore-app restore latest' in helped.stdout and 'restore one archive' not in helped.stdout
        assert 'a note' in helped.stdout and 'stops a.service, b.service' in helped.stdout
        assert subprocess.run(['bash', str(path), 'nonsense'], capture_output=True, check=False).returncode == 2
        listed = subprocess.run(['bash', str(path), 'snapshots'], capture_output=True, text=True, check=False,
                                env={'PATH': os.environ['PATH'], 'CREDENTIALS_DIRECTORY': str(tmp_path)})
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == ''.join(f'{value}\n' for value in UGLY)
    finally:
        shutil.rmtree(library)


@pytest.mark.parametrize('missing', ['provider_dump', 'provider_backup'])
def test_a_provider_half_without_a_function_of_the_interface_fails_at_once(tmp_path, missing):
    library = make_library({'borg.sh': STAND_IN.replace(f'{missing}()', 'something_else()')})
    try:
        path = tmp_path / 'script'
        path.write_text(_provider.render_script(spec(library=library)))
        result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert result.returncode == 1 and f'borg.sh does not define {missing}' in result.stderr
    finally:
        shutil.rmtree(library)


def test_a_data_file_without_a_variable_of_job_sh_fails_at_once(tmp_path):
    library = make_library({'borg.sh': STAND_IN})
    try:
        script = _provider.render_script(spec(library=library))
        path = tmp_path / 'script'
        path.write_text('\n'.join(line for line in script.splitlines() if not line.startswith('readonly RESTORE_CMD=')))
        result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert result.returncode == 1 and 'the job data does not define RESTORE_CMD' in result.stderr
    finally:
        shutil.rmtree(library)


@pytest.mark.parametrize('name', ['restore', 'Bad', 'a b'])
def test_render_script_refuses_bad_maintenance_names(name):
    with pytest.raises(_provider.ProviderError):
        _provider.render_script(spec(maintenance=('backup', name)))


def test_job_options():
    options = _provider.job_options(spec(), _provider.Schedule('hourly', 5, False), read_write_paths=['/srv/x'],
                                    extra_jobs=[('check', 'weekly')], nice=3, io_scheduling_class='idle',
                                    wants=['network-online.target'])
    assert options['name'] == 'borg-backup-app'
    assert options['exec_start'] == [['/bin/bash', '/usr/local/bin/borg-restore-app', 'backup']]
    assert options['extra_jobs'][0]['exec_start'] == [['/bin/bash', '/usr/local/bin/borg-restore-app', 'check']]
    assert options['cache_directory'] == 'borg-backup-app'
    assert (options['on_calendar'], options['randomized_delay_sec'], options['persistent']) == ('hourly', 5, False)
    assert (options['nice'], options['io_scheduling_class']) == (3, 'idle')
    assert options['restore_script']['name'] == 'borg-restore-app'
    plain = _provider.job_options(spec(), _provider.Schedule())
    assert 'nice' not in plain and 'io_scheduling_class' not in plain


@pytest.mark.parametrize('value', ['a\0b', ['ok', 'a\0b'], {'': '/x'}, {'k': 'a\0'}])
def test_values_bash_cannot_hold_are_refused(value):
    with pytest.raises(_job_data.JobDataError):
        _job_data.assignment('NAME', value)
