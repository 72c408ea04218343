# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""borg_repository: a new passphrase is checked against an existing repository, and a repository the job
initialised before that is missing now fails; the command runner is the only thing stubbed."""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfhost.backup.plugins.modules import borg_repository

SECRET = 'borg-passphrase-31'
# A file that exists, standing for an installed borg (the command runner is stubbed: it never runs).
BORG_ON_HOST = sys.executable
WRONG = (2, '', 'passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect.\n')
MISSING_REMOTE = (2, '', 'Repository /srv/borg/db1 does not exist.\n')


@pytest.fixture
def as_reported():
    """The result as Ansible reports it (conftest.py): every no_log value masked, failed false on success."""
    return True


class FakeBorg:
    """Answers in order; records each call and what its private directory held at that moment."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, argv, data=None, environ_update=None, cwd=None, **kwargs):
        env = dict(environ_update or {})
        private = Path(env['BORG_BASE_DIR']).parent
        held = {path.name: path.read_text() for path in private.iterdir() if path.is_file()}
        self.calls.append({'argv': argv, 'data': data, 'env': env, 'private': private, 'held': held,
                           'modes': {path.name: path.stat().st_mode & 0o777 for path in private.iterdir()}
                           | {'.': private.stat().st_mode & 0o777}})
        return self.answers.pop(0)


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / 'cache').mkdir()
    (tmp_path / 'repo').mkdir()
    return tmp_path


def local(tmp, **changes):
    spec = {'name': 'app', 'user': getpass.getuser(), 'repository': str(tmp / 'repo'),
            'marker': str(tmp / 'cache' / 'selfhost-backup-initialised'), 'passphrase': SECRET,
            'password_file': str(tmp / 'not-written-yet')}
    spec.update(changes)
    return spec


def remote(tmp, **changes):
    (tmp / 'ssh_key').write_text('PRIVATE KEY')
    return local(tmp, repository='ssh://borg@server/srv/borg/db1', ssh_key=str(tmp / 'ssh_key'),
                 known_hosts='server ssh-ed25519 AAAA\n', **changes)


def run(monkeypatch, tmp, answers, repositories, check=False, **params):
    fake = FakeBorg(answers)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, argv, **kwargs: fake(argv, **kwargs))
    # Answers in the order of the calls: one repository at a time (the concurrent checks have tests of their own).
    args = {'repositories': repositories, 'borg': BORG_ON_HOST, 'state_file': str(tmp / 'state' / 'opened.json'),
            '_ansible_check_mode': check, 'jobs': 1} | params
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:  # exit_json or fail_json (conftest.py)
            borg_repository.main()
    return info.value.result, fake.calls


def initialise(tmp, repository=None):
    """What a first backup leaves: the repository's config (local) and the job's marker naming it."""
    if repository is None:
        (tmp / 'repo' / 'config').write_text('[repository]\nid = 1234\n')
    (tmp / 'cache' / 'selfhost-backup-initialised').write_text((repository or str(tmp / 'repo')) + '\n')


def test_a_repository_not_created_yet_needs_no_borg(monkeypatch, tmp):
    result, calls = run(monkeypatch, tmp, [], [local(tmp)])
    assert calls == [] and result['changed'] is False
    assert result['repositories'] == [{'name': 'app', 'changed': False, 'state': 'absent'}]


def test_a_wrong_passphrase_fails_naming_the_instance_never_the_secret(monkeypatch, tmp):
    initialise(tmp)
    result, calls = run(monkeypatch, tmp, [WRONG], [local(tmp, passphrase='not-the-one')])
    assert result['failed'] is True
    assert result['msg'] == 'borg_instances.app: the passphrase does not open the existing repository (borg: passphrase incorrect)'
    assert 'not-the-one' not in json.dumps(result)
    call = calls[0]
    # The passphrase reaches borg on stdin only: never in argv or the environment.
    assert call['data'] == 'not-the-one'
    assert call['env']['BORG_PASSPHRASE_FD'] == '0' and 'not-the-one' not in json.dumps(call['env'])
    assert 'not-the-one' not in ' '.join(call['argv'])
    assert call['argv'][:2] == ['timeout', '120']
    assert call['argv'][-11:] == ['env', '-u', 'BORG_PASSPHRASE', '-u', 'BORG_PASSCOMMAND', BORG_ON_HOST,
                                  '--bypass-lock', 'list', '--short', '--last', '1']
    assert call['env']['BORG_REPO'] == str(tmp / 'repo') and call['env']['BORG_EXIT_CODES'] == 'legacy'
    assert call['modes']['.'] == 0o700
    # The private directory is gone afterwards.
    assert not call['private'].exists()


def test_a_repository_created_by_another_instance_is_checked_too(monkeypatch, tmp):
    (tmp / 'repo' / 'config').write_text('[repository]\n')  # e.g. shared, initialised by the other instance
    result, calls = run(monkeypatch, tmp, [WRONG], [local(tmp)])
    assert result['failed'] is True and len(calls) == 1


def test_a_passphrase_that_opened_the_repository_before_needs_no_borg(monkeypatch, tmp):
    initialise(tmp)
    result, calls = run(monkeypatch, tmp, [(0, '', '')], [local(tmp)])
    assert result['repositories'][0]['state'] == 'present' and len(calls) == 1
    state = tmp / 'state' / 'opened.json'
    assert oct(state.stat().st_mode & 0o777) == '0o600' and SECRET not in state.read_text()
    result, calls = run(monkeypatch, tmp, [], [local(tmp)])
    assert calls == [] and result['repositories'][0]['state'] == 'present'
    # A new passphrase is checked again.
    result, calls = run(monkeypatch, tmp, [WRONG], [local(tmp, passphrase='rotated')])
    assert result['failed'] is True and len(calls) == 1


def test_the_passphrase_file_is_read_when_no_passphrase_is_given(monkeypatch, tmp):
    initialise(tmp)
    (tmp / 'pass').write_text('from-the-file\n')
    result, calls = run(monkeypatch, tmp, [(0, '', '')], [local(tmp, passphrase=None, password_file=str(tmp / 'pass'))])
    assert result['failed'] is False and calls[0]['data'] == 'from-the-file'
    result, calls = run(monkeypatch, tmp, [], [local(tmp, passphrase=None, password_file=str(tmp / 'nope'))])
    assert result['failed'] is True and result['msg'] == f'borg_instances.app: cannot read the passphrase from {tmp / "nope"}'
    # In check mode, a passphrase file not on the host yet is nothing to check.
    result, calls = run(monkeypatch, tmp, [], [local(tmp, passphrase=None, password_file=str(tmp / 'nope'))], check=True)
    assert result['failed'] is False and result['repositories'][0]['state'] == 'unknown'


def test_a_passphrase_file_that_links_to_a_secrets_mount_is_read(monkeypatch, tmp):
    # sops or a vault agent link passphrase files into /run/secrets; the units' LoadCredential= follows them too.
    initialise(tmp)
    (tmp / 'real').write_text('from-the-secrets-mount\n')
    (tmp / 'pass').symlink_to(tmp / 'real')
    result, calls = run(monkeypatch, tmp, [(0, '', '')], [local(tmp, passphrase=None, password_file=str(tmp / 'pass'))])
    assert result['failed'] is False and calls[0]['data'] == 'from-the-secrets-mount'


def test_a_vanished_local_repository_fails_until_reinitialised(monkeypatch, tmp):
    initialise(tmp)
    (tmp / 'repo' / 'config').unlink()  # a wiped volume: the directory is there, the repository is not
    result, calls = run(monkeypatch, tmp, [], [local(tmp)])
    assert calls == [] and result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith(f'borg_instances.app: the repository {tmp / "repo"} was initialised by this '
                                    "instance's job before")
    assert 'borg_reinitialise_repositories: [app]' in result['msg']
    marker = tmp / 'cache' / 'selfhost-backup-initialised'
    assert marker.exists()
    # Check mode reports the escape hatch and keeps the marker; a real run removes it, once.
    result, calls = run(monkeypatch, tmp, [], [local(tmp, reinitialise=True)], check=True)
    assert result['changed'] is True and marker.exists()
    result, calls = run(monkeypatch, tmp, [], [local(tmp, reinitialise=True)])
    assert result['changed'] is True and result['repositories'][0]['state'] == 'absent' and not marker.exists()
    result, calls = run(monkeypatch, tmp, [], [local(tmp, reinitialise=True)])
    assert result['changed'] is False


def test_a_marker_of_another_repository_does_not_count(monkeypatch, tmp):
    initialise(tmp, repository='/srv/borg/old-place')
    result, calls = run(monkeypatch, tmp, [], [local(tmp)])
    assert result['failed'] is False and result['repositories'][0]['state'] == 'absent'


def test_a_remote_repository_is_asked_only_once_the_job_initialised_it(monkeypatch, tmp):
    result, calls = run(monkeypatch, tmp, [], [remote(tmp)])
    assert calls == [] and result['repositories'][0]['state'] == 'unchecked'
    initialise(tmp, 'ssh://borg@server/srv/borg/db1')
    result, calls = run(monkeypatch, tmp, [(0, 'app@db1-2025', '')], [remote(tmp)])
    assert result['repositories'][0]['state'] == 'present'
    call = calls[0]
    # The job's key and the new pinned host keys, copied for the user into the private directory.
    assert call['held'] == {'ssh_key': 'PRIVATE KEY', 'known_hosts': 'server ssh-ed25519 AAAA\n'}
    assert call['modes']['ssh_key'] == 0o600
    assert f"-i {call['private']}/ssh_key" in call['env']['BORG_RSH']
    assert 'StrictHostKeyChecking=yes' in call['env']['BORG_RSH']
    assert not call['private'].exists()
    # Remote repositories are asked at every run, and a wrong passphrase fails like a local one.
    result, calls = run(monkeypatch, tmp, [WRONG], [remote(tmp, passphrase='bad')])
    assert result['failed'] is True and 'borg_instances.app: the passphrase does not open' in result['msg']


def test_a_vanished_remote_repository_fails_until_reinitialised(monkeypatch, tmp):
    initialise(tmp, 'ssh://borg@server/srv/borg/db1')
    result, calls = run(monkeypatch, tmp, [MISSING_REMOTE], [remote(tmp)])
    assert result['failed'] is True
    assert result['msg'].startswith("borg_instances.app: the repository on its server was initialised by this "
                                    "instance's job before")
    result, calls = run(monkeypatch, tmp, [MISSING_REMOTE], [remote(tmp, reinitialise=True)])
    assert result['changed'] is True and not (tmp / 'cache' / 'selfhost-backup-initialised').exists()


def test_an_unreachable_server_fails_with_borgs_words(monkeypatch, tmp):
    initialise(tmp, 'ssh://borg@server/srv/borg/db1')
    answer = (2, '', 'Remote: ssh: connect to host server port 22: Connection refused\nConnection closed by remote host\n')
    result, calls = run(monkeypatch, tmp, [answer], [remote(tmp)])
    assert result['failed'] is True
    assert result['msg'].startswith('borg_instances.app: borg cannot open the repository (rc=2): Remote: ssh: connect')


def test_every_failing_instance_is_named(monkeypatch, tmp):
    initialise(tmp)
    specs = [local(tmp, name='a'), local(tmp, name='b', repository=str(tmp / 'other')), local(tmp, name='c')]
    (tmp / 'other').mkdir()
    result, calls = run(monkeypatch, tmp, [WRONG, WRONG], specs)
    assert [line.split(':')[0] for line in result['msg'].splitlines()] == ['borg_instances.a', 'borg_instances.c']
    assert [item['name'] for item in result['repositories']] == ['b']


def test_check_mode_without_borg_installed_checks_nothing(monkeypatch, tmp):
    initialise(tmp)
    result, calls = run(monkeypatch, tmp, [], [local(tmp)], check=True, borg='/nonexistent/borg')
    assert calls == [] and result['repositories'][0]['state'] == 'unknown'


def test_check_mode_does_not_ask_the_server_for_a_key_it_is_about_to_authorize(monkeypatch, tmp):
    """A client the server dropped and lists again: in check mode its key was not put back on the server, which
    would refuse it; the role names the instance in pending_authorization and the check is unknown. Outside check
    mode (the key was authorized before the check) it is asked as always."""
    initialise(tmp, 'ssh://borg@server/srv/borg/db1')
    other = remote(tmp, name='other')
    result, calls = run(monkeypatch, tmp, [(0, '', '')], [remote(tmp), other], check=True,
                        pending_authorization=['app'])
    assert result['repositories'] == [{'name': 'app', 'changed': False, 'state': 'unknown'},
                                      {'name': 'other', 'changed': False, 'state': 'present'}]
    assert len(calls) == 1  # only the other instance's repository was asked
    result, calls = run(monkeypatch, tmp, [(0, '', '')], [remote(tmp)], pending_authorization=['app'])
    assert result['repositories'][0]['state'] == 'present' and len(calls) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason='runs borg as another user')
def test_borg_runs_as_the_repositorys_user(monkeypatch, tmp):
    initialise(tmp)
    result, calls = run(monkeypatch, tmp, [(0, '', '')], [local(tmp, user='nobody')])
    assert calls[0]['argv'][2] == 'setpriv' and '--init-groups' in calls[0]['argv']


class ConcurrentBorg:
    """borg list of several repositories, each call taking a while: the wrong passphrase for those in `wrong`;
    records how many ran at once at most."""

    def __init__(self, wrong=()):
        self.wrong = set(wrong)
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.repositories = []

    def __call__(self, argv, data=None, environ_update=None, cwd=None, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.repositories.append(environ_update['BORG_REPO'])
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return WRONG if environ_update['BORG_REPO'] in self.wrong else (0, '', '')


def existing(tmp, count):
    specs = []
    for index in range(count):
        (tmp / f'r{index}').mkdir()
        (tmp / f'r{index}' / 'config').write_text(f'repository {index}')
        specs.append(local(tmp, name=f'i{index}', repository=str(tmp / f'r{index}'),
                           marker=str(tmp / 'cache' / f'marker{index}')))
    return specs


@pytest.mark.parametrize('jobs, most', [(None, os.cpu_count() or 1), (2, 2), (1, 1)])
def test_repositories_are_checked_concurrently_in_order_bounded_by_jobs(monkeypatch, tmp, jobs, most):
    fake = ConcurrentBorg(wrong={str(tmp / 'r1'), str(tmp / 'r3')})
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, argv, **kwargs: fake(argv, **kwargs))
    args = {'repositories': existing(tmp, 4), 'borg': BORG_ON_HOST, 'state_file': str(tmp / 'state' / 'opened.json'),
            'jobs': jobs}
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            borg_repository.main()
    result = info.value.result
    assert fake.most == min(most, 4)
    assert sorted(fake.repositories) == sorted(str(tmp / f'r{index}') for index in range(4))
    assert result['failed'] is True
    assert [line.split(':')[0] for line in result['msg'].splitlines()] == ['borg_instances.i1', 'borg_instances.i3']
    assert [item['name'] for item in result['repositories']] == ['i0', 'i2']
    assert SECRET not in json.dumps(result)
    # What opened is remembered, also from a run that failed for others: the re-run asks borg only about those.
    fake.repositories.clear()
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            borg_repository.main()
    assert sorted(fake.repositories) == [str(tmp / 'r1'), str(tmp / 'r3')]
