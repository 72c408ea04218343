# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An unexpected exception in a secret module fails it through fail_json with the secrets it read masked in the
message, in every form Python writes them (their action plugin cannot mask what was read on the host). The
results here are as the module passed them (conftest.py), before Ansible's own verbatim masking."""

from __future__ import annotations

import getpass
import grp
import json
import os
import sys

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfhost.backup.plugins.modules import borg_repository, job_paths, restic_repository

# Both quote kinds, backslash, $, backtick, % and non-ASCII; 'Zq' is in no escaped form of anything else.
UGLY = 'Zq"it\'s\\ $HOME `id` 100% Grüße'


def leaks(result):
    text = json.dumps(result, ensure_ascii=False)
    return 'Zq' in text or 'Grüße' in text or 'Gr\\u00fc' in text


def crashing_runner(monkeypatch):
    """A command runner that raises with what it was given in the message, as a careless library would."""
    def run_command(module, argv, data=None, **kwargs):
        raise ValueError(f'cannot write {data!r} to {argv[-1]!r}')
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)


def ended(main, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            main()
    return info.value.result


def test_restic_repository_reports_an_exception_with_the_passphrase_read_from_its_file_masked(monkeypatch, tmp_path):
    (tmp_path / 'pass').write_text(UGLY + '\n')
    (tmp_path / 'repo').write_text('/srv/backup/app')
    crashing_runner(monkeypatch)
    result = ended(restic_repository.main, {
        'password_file': str(tmp_path / 'pass'), 'environment_files': {'RESTIC_REPOSITORY': str(tmp_path / 'repo')},
        'user': getpass.getuser(), 'state_file': str(tmp_path / 'opened.json'), 'restic': sys.executable})
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith("unexpected error: ValueError: cannot write '********' to 'config'"), result
    assert not leaks(result)


def test_borg_repository_reports_an_exception_with_the_passphrase_read_from_its_file_masked(monkeypatch, tmp_path):
    (tmp_path / 'pass').write_text(UGLY + '\n')
    (tmp_path / 'cache').mkdir()
    (tmp_path / 'repo').mkdir()
    (tmp_path / 'repo' / 'config').write_text('[repository]\n')
    crashing_runner(monkeypatch)
    spec = {'name': 'app', 'user': getpass.getuser(), 'repository': str(tmp_path / 'repo'),
            'marker': str(tmp_path / 'cache' / 'selfhost-backup-initialised'), 'password_file': str(tmp_path / 'pass')}
    result = ended(borg_repository.main, {'repositories': [spec], 'borg': sys.executable,
                                          'state_file': str(tmp_path / 'opened.json')})
    assert result['failed'] is True
    assert result['msg'].startswith('unexpected error: ValueError: cannot write '), result
    assert '********' in result['msg']
    assert not leaks(result)


def test_job_paths_reports_an_exception_while_writing_masked_and_changed(monkeypatch, tmp_path):
    def apply(mover, the_plan):
        raise OverflowError(f'no room for {[UGLY]!r}')  # as a library quoting what it was given
    monkeypatch.setattr(job_paths.paths, 'apply', apply)
    secret = {'path': str(tmp_path / 'etc' / 'passphrase'), 'content': UGLY, 'owner': getpass.getuser(),
              'group': grp.getgrgid(os.getgid()).gr_name}
    result = ended(job_paths.main, {'directories': [], 'secret_files': [secret],
                                    '_ansible_remote_tmp': str(tmp_path / 'remote-tmp')})
    assert result['failed'] is True
    # The writing had started: some paths may have changed.
    assert result['changed'] is True
    assert result['msg'] == "unexpected error: OverflowError: no room for ['********']", result
    assert not leaks(result)


def test_exit_and_fail_are_not_caught_as_errors(monkeypatch, tmp_path):
    (tmp_path / 'pass').write_text('plain\n')
    (tmp_path / 'repo').write_text('/srv/backup/app')
    wrong = (1, '', 'Fatal: wrong password or no key found')
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, argv, **kwargs: wrong)
    result = ended(restic_repository.main, {
        'password_file': str(tmp_path / 'pass'), 'environment_files': {'RESTIC_REPOSITORY': str(tmp_path / 'repo')},
        'user': getpass.getuser(), 'state_file': str(tmp_path / 'opened.json'), 'restic': sys.executable})
    assert result['failed'] is True and 'unexpected error' not in result['msg'], result
