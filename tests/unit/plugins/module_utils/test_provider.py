# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The provider-neutral half: names, secrets layout, job script skeleton, backup_timer options."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _provider

LAYOUT = _provider.Layout('borg', 'app')


def spec(**changes):
    values = dict(
        layout=LAYOUT, user='postgres', backup_name='db.sql', backup_cmd='pg_dumpall', restore_cmd='psql',
        credentials={'passphrase': '/etc/selfhost-backup/borg/app/passphrase'}, env_names=(), stop_units=(),
        functions='provider_snapshots() { :; }\nprovider_dump() { :; }\nprovider_backup() { :; }\n',
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


@pytest.mark.parametrize('path, instance', [
    ('/var/lib/selfhost-backup/restic-backup-app.json', 'app'),
    ('/var/lib/selfhost-backup/restic-backup-a.b-c.json', 'a.b-c'),
    ('/var/lib/selfhost-backup/borg-backup-app.json', None),
    ('/var/lib/selfhost-backup/restic-backup-.json', None),
    ('/var/lib/selfhost-backup/restic-backup-app.txt', None),
])
def test_job_name_of_manifest(path, instance):
    assert _provider.job_name_of_manifest('restic', path) == instance


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


def test_render_script_quotes_values_and_is_valid_bash(tmp_path):
    nasty = "printf '%s' \"$HOME\" @@SCRIPT@@ `id`; echo 100%"
    script = _provider.render_script(spec(backup_cmd=nasty, stop_units=('a.service', 'b.service'),
                                          env_names=('AWS_KEY',), notes=('a note',)))
    assert script.startswith('#!/bin/bash\n')
    assert "set -euo pipefail" in script
    # shlex quoting keeps the command verbatim; a marker inside a value is not substituted again.
    assert "readonly BACKUP_CMD='printf '\"'\"'%s'\"'\"' \"$HOME\" @@SCRIPT@@ `id`; echo 100%'" in script
    assert 'readonly STOP_UNITS=(a.service b.service)' in script
    assert 'readonly ENV_SECRETS=(AWS_KEY)' in script
    assert "passphrase) printf '%s\\n' /etc/selfhost-backup/borg/app/passphrase ;;" in script
    assert 'a note' in script and 'stops a.service, b.service' in script
    path = tmp_path / 'script'
    path.write_text(script)
    assert subprocess.run(['bash', '-n', str(path)], check=False).returncode == 0
    helped = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and 'borg-restore-app restore latest' in helped.stdout
    assert subprocess.run(['bash', str(path), 'nonsense'], capture_output=True, check=False).returncode == 2


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
