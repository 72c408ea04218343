# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""restic_repository: probe, then init only when missing; the command runner is the only thing stubbed."""

from __future__ import annotations

import getpass
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfhost.backup.plugins.modules import restic_repository

SECRET = 'repo-passphrase-42'
# A file that exists, standing for an installed restic (the command runner is stubbed: it never runs).
RESTIC_ON_HOST = sys.executable


@pytest.fixture
def as_reported():
    """The result as Ansible reports it (conftest.py): every no_log value masked, failed false on success."""
    return True


class FakeRestic:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, argv, data=None, environ_update=None, cwd=None, **kwargs):
        self.calls.append({'argv': argv, 'data': data, 'env': environ_update})
        return self.answers.pop(0)


@pytest.fixture
def files(tmp_path):
    (tmp_path / 'pass').write_text(SECRET + '\n')
    (tmp_path / 'repo').write_text('/srv/backup/app')
    return tmp_path


def run(monkeypatch, files, answers, check=False, **params):
    fake = FakeRestic(answers)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, argv, **kwargs: fake(argv, **kwargs))
    args = dict(password_file=str(files / 'pass'), environment_files={'RESTIC_REPOSITORY': str(files / 'repo')},
                user=getpass.getuser(), state_file=str(files / 'state' / 'opened.json'), _ansible_check_mode=check)
    if check:
        args['restic'] = RESTIC_ON_HOST  # in check mode a restic that is not installed yet is not run
    args.update(params)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:  # exit_json or fail_json (conftest.py)
            restic_repository.main()
    return info.value.result, fake.calls


def test_existing_repository_is_left_alone(monkeypatch, files):
    result, calls = run(monkeypatch, files, [(0, '{}', '')])
    assert result == {'changed': False, 'initialized': False, 'state': 'present', 'failed': False}
    call = calls[0]
    assert call['argv'][:2] == ['timeout', '120']
    assert call['argv'][2:] == ['/usr/bin/restic', '--no-cache', '--quiet', 'cat', 'config']
    # The passphrase goes to stdin, the repository to the environment: never to argv.
    assert call['data'] == SECRET
    assert call['env']['RESTIC_REPOSITORY'] == '/srv/backup/app'
    assert SECRET not in ' '.join(call['argv'])


def test_missing_repository_is_initialised(monkeypatch, files):
    result, calls = run(monkeypatch, files, [(10, '', 'Fatal: repository does not exist'), (0, 'created', '')])
    assert result['changed'] is True and result['initialized'] is True
    assert calls[1]['argv'][-1] == 'init'


def test_check_mode_only_probes(monkeypatch, files):
    result, calls = run(monkeypatch, files, [(1, '', 'Is there a repository at the following location?')], check=True)
    assert result['changed'] is True
    assert len(calls) == 1


def test_wrong_password_is_an_error_not_an_init(monkeypatch, files):
    result, calls = run(monkeypatch, files, [(1, '', 'Fatal: wrong password or no key found')])
    assert result['failed'] is True and 'wrong password' in result['msg']
    assert len(calls) == 1


def test_failed_init_is_reported(monkeypatch, files):
    result, dummy = run(monkeypatch, files, [(10, '', ''), (1, '', 'Fatal: create repository failed')])
    assert result['failed'] is True and 'restic init failed' in result['msg']


def test_repository_option_and_other_user(monkeypatch, files):
    result, calls = run(monkeypatch, files, [(0, '', '')], environment_files={}, repository='/srv/x', user='nobody')
    assert calls[0]['env']['RESTIC_REPOSITORY'] == '/srv/x'
    if os.geteuid() != 65534:
        assert calls[0]['argv'][2] == 'setpriv' and '--init-groups' in calls[0]['argv']


@pytest.mark.parametrize('params, message', [
    ({'environment_files': {}}, 'RESTIC_REPOSITORY'),
    ({'user': 'no-such-user-here'}, 'does not exist'),
    ({'password_file': '/nonexistent/pass'}, 'cannot read the passphrase'),
])
def test_input_errors(monkeypatch, files, params, message):
    result, calls = run(monkeypatch, files, [], **params)
    assert result['failed'] is True and message in result['msg']
    assert calls == []


def test_check_mode_before_the_secrets_exist(monkeypatch, files):
    result, calls = run(monkeypatch, files, [], check=True, password_file=str(files / 'not-yet'))
    assert result['changed'] is True and result['initialized'] is True
    assert calls == []


def run_list(monkeypatch, answers, repositories, check=False, fake=None, **params):
    """The list form; answers in the order of the calls, so one repository at a time unless jobs is given."""
    fake = fake or FakeRestic(answers)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, argv, **kwargs: fake(argv, **kwargs))
    with patch_module_args({'repositories': repositories, '_ansible_check_mode': check, 'restic': RESTIC_ON_HOST,
                            'state_file': str(repositories_state(repositories)), 'jobs': 1} | params):
        with pytest.raises(SystemExit) as info:  # exit_json or fail_json (conftest.py)
            restic_repository.main()
    return info.value.result, fake.calls


def local_repository(files, name, initialised, prefix=''):
    path = files / name
    path.mkdir()
    if initialised:
        (path / 'config').write_text('encrypted')
    (files / f'{name}.env').write_text(f'{prefix}{path}\n')
    return {'user': getpass.getuser(), 'password_file': str(files / 'pass'),
            'environment_files': {'RESTIC_REPOSITORY': str(files / f'{name}.env')}}


def repositories_state(repositories):
    """The state file beside the first repository's password file (the tests' temporary directory)."""
    return Path(repositories[0]['password_file']).parent / 'state' / 'opened.json' if repositories else Path('/nonexistent')


@pytest.mark.parametrize('prefix', ['', 'local:'])
def test_a_local_repository_opened_before_with_this_passphrase_runs_no_restic(monkeypatch, files, prefix):
    local = {'repository': f'{prefix}{files}', 'environment_files': {}}
    # Without its config file the directory is probed (it may be a repository being created) and not recorded.
    result, calls = run(monkeypatch, files, [(0, '{}', '')], **local)
    assert len(calls) == 1 and result['changed'] is False
    assert not (files / 'state' / 'opened.json').exists()
    (files / 'config').write_text('encrypted')
    result, calls = run(monkeypatch, files, [(0, '{}', '')], **local)
    assert len(calls) == 1
    state = files / 'state' / 'opened.json'
    assert oct(state.stat().st_mode & 0o777) == '0o600' and SECRET not in state.read_text()
    result, calls = run(monkeypatch, files, [], **local)
    assert calls == [] and result == {'changed': False, 'initialized': False, 'state': 'present', 'failed': False}
    # A new passphrase, or another repository under the same path: probed again (a wrong one fails here).
    (files / 'pass').write_text('another passphrase\n')
    result, calls = run(monkeypatch, files, [(1, '', 'Fatal: wrong password or no key found')], **local)
    assert len(calls) == 1 and result['failed'] is True
    (files / 'pass').write_text(SECRET + '\n')
    (files / 'config').write_text('another repository')
    result, calls = run(monkeypatch, files, [(0, '{}', '')], **local)
    assert len(calls) == 1 and result['changed'] is False


@pytest.mark.skipif(os.geteuid() != 0, reason='runs restic as another user')
def test_another_user_opens_the_repository_again(monkeypatch, files):
    (files / 'config').write_text('encrypted')
    local = {'repository': str(files), 'environment_files': {}}
    run(monkeypatch, files, [(0, '{}', '')], **local)
    assert run(monkeypatch, files, [], **local)[1] == []
    result, calls = run(monkeypatch, files, [(0, '{}', '')], user='nobody', **local)
    assert len(calls) == 1 and calls[0]['argv'][2] == 'setpriv'


def test_check_mode_records_nothing(monkeypatch, files):
    (files / 'config').write_text('encrypted')
    result, calls = run(monkeypatch, files, [(0, '{}', '')], check=True, repository=str(files), environment_files={})
    assert len(calls) == 1 and result['changed'] is False
    assert not (files / 'state').exists()


def test_list_probes_only_what_it_must(monkeypatch, files):
    repositories = [
        local_repository(files, 'done', True),
        local_repository(files, 'fresh', False, 'local:'),
        {'user': getpass.getuser(), 'password_file': str(files / 'pass'), 'repository': 's3:https://s3.example/b'},
    ]
    result, calls = run_list(monkeypatch, [(0, '{}', ''), (10, '', ''), (0, '', ''), (0, '{}', '')], repositories)
    assert result['changed'] is True and result['initialized'] is True
    assert [item['initialized'] for item in result['repositories']] == [False, True, False]
    assert [call['argv'][-2:] for call in calls] == [['cat', 'config'], ['cat', 'config'], ['--quiet', 'init'],
                                                     ['cat', 'config']]
    assert calls[3]['env']['RESTIC_REPOSITORY'] == 's3:https://s3.example/b'
    assert SECRET not in str(result)
    # The re-run: the local repository opened before is trusted (the fake init made no config: 'fresh' is
    # probed again); the remote one is always probed.
    result, calls = run_list(monkeypatch, [(0, '{}', ''), (0, '{}', '')], repositories)
    assert result['changed'] is False
    assert [call['env']['RESTIC_REPOSITORY'] for call in calls] == [f"local:{files / 'fresh'}", 's3:https://s3.example/b']


def test_list_check_mode_with_missing_secrets_probes_the_others(monkeypatch, files):
    repositories = [dict(local_repository(files, 'new', False), password_file=str(files / 'not-yet')),
                    local_repository(files, 'old', False)]
    result, calls = run_list(monkeypatch, [(0, '{}', '')], repositories, check=True)
    assert [item['changed'] for item in result['repositories']] == [True, False]
    assert len(calls) == 1


def test_list_failure_names_the_repository_and_what_changed(monkeypatch, files):
    repositories = [local_repository(files, 'fresh', False), local_repository(files, 'broken', False)]
    result, dummy = run_list(monkeypatch, [(10, '', ''), (0, '', ''), (1, '', 'Fatal: wrong password')], repositories)
    assert result['failed'] is True and result['changed'] is True
    assert result['msg'].startswith(f'repository of {files / "pass"}: the passphrase does not open the existing repository')


def test_single_and_list_forms_are_exclusive(monkeypatch, files):
    result, dummy = run(monkeypatch, files, [], repositories=[])
    assert result['failed'] is True and 'mutually exclusive' in result['msg']


def test_a_relative_local_path_is_probed(monkeypatch, files):
    result, calls = run(monkeypatch, files, [(0, '{}', '')], repository='local:repo', environment_files={})
    assert len(calls) == 1 and result['changed'] is False


MISSING = (10, '', 'Fatal: repository does not exist: unable to open config file')


def test_a_local_repository_seen_before_that_vanished_is_never_initialised_again(monkeypatch, files):
    (files / 'config').write_text('encrypted')
    local = {'repository': str(files), 'environment_files': {}}
    run(monkeypatch, files, [(0, '{}', '')], **local)
    # The volume is wiped (or not mounted): the directory is there, the repository is not.
    (files / 'config').unlink()
    result, calls = run(monkeypatch, files, [MISSING], **local)
    assert result['failed'] is True
    assert f'the repository {files} was opened on this host before and is missing now' in result['msg']
    assert 'restic_reinitialise_repositories: [<instance>]' in result['msg']
    assert [call['argv'][-2:] for call in calls] == [['cat', 'config']]  # probed, never initialised


def test_reinitialise_starts_a_vanished_repository_again_on_purpose(monkeypatch, files):
    repositories = [dict(local_repository(files, 'app', True), name='app')]
    run_list(monkeypatch, [(0, '{}', '')], repositories)
    (files / 'app' / 'config').unlink()
    result, calls = run_list(monkeypatch, [MISSING], repositories)
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith('restic_instances.app: the repository ')
    assert 'restic_reinitialise_repositories: [app]' in result['msg'] and len(calls) == 1
    result, calls = run_list(monkeypatch, [MISSING, (0, 'created', '')], [dict(repositories[0], reinitialise=True)])
    assert result['changed'] is True and result['repositories'][0]['initialized'] is True
    assert calls[1]['argv'][-1] == 'init'


def test_the_check_uses_the_secrets_given_and_initialises_nothing(monkeypatch, files):
    check = {'name': 'app', 'user': getpass.getuser(), 'password_file': str(files / 'not-written-yet'),
             'passphrase': 'the-new-one', 'environment': {'RESTIC_REPOSITORY': str(files / 'repo-dir'),
                                                          'AWS_SECRET_ACCESS_KEY': 'aws-secret-9'}}
    result, calls = run_list(monkeypatch, [MISSING], [check], init=False)
    assert result['failed'] is False and result['changed'] is False
    assert result['repositories'] == [{'name': 'app', 'password_file': str(files / 'not-written-yet'),
                                       'user': getpass.getuser(), 'changed': False, 'initialized': False,
                                       'state': 'absent'}]
    assert len(calls) == 1 and calls[0]['data'] == 'the-new-one'
    assert calls[0]['env']['RESTIC_REPOSITORY'] == str(files / 'repo-dir')
    assert calls[0]['env']['AWS_SECRET_ACCESS_KEY'] == 'aws-secret-9'
    # A repository that exists and does not open with the new passphrase: named, the secret never shown.
    result, calls = run_list(monkeypatch, [(12, '', 'Fatal: wrong password or no key found')], [check], init=False)
    assert result['failed'] is True
    assert result['msg'] == ('restic_instances.app: the passphrase does not open the existing repository '
                             '(restic: Fatal: wrong password or no key found)')
    assert 'the-new-one' not in str(result) and 'aws-secret-9' not in str(result)


def test_a_server_certificate_of_another_ca_is_a_tls_error_and_nothing_is_initialised(monkeypatch, files):
    check = {'name': 'tls', 'user': getpass.getuser(), 'password_file': str(files / 'pass'), 'passphrase': 'pw',
             'cacert': '/etc/ssl/other-ca.pem',
             'environment': {'RESTIC_REPOSITORY': 'rest:https://db1:rest-pw-5@server:8000/db1/tls/'}}
    untrusted = (1, '', 'Fatal: unable to open config file: Stat: Head "https://server:8000/db1/tls/config": x509: '
                        'certificate signed by unknown authority\nIs there a repository at the following location?\n')
    result, calls = run_list(monkeypatch, [untrusted], [check])
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith("restic_instances.tls: the TLS certificate of the repository's server is not "
                                    'trusted')
    assert 'x509: certificate signed by unknown authority' in result['msg']
    assert len(calls) == 1  # probed with the CA given, never initialised
    assert calls[0]['argv'][-4:] == ['--cacert', '/etc/ssl/other-ca.pem', 'cat', 'config']
    assert 'rest-pw-5' not in str(result)
    # The right CA: probed and initialised with it.
    result, calls = run_list(monkeypatch, [MISSING, (0, 'created', '')], [dict(check, cacert='/etc/ssl/ca.pem')])
    assert result['changed'] is True
    assert [call['argv'][-3:] for call in calls] == [
        ['/etc/ssl/ca.pem', 'cat', 'config'], ['--cacert', '/etc/ssl/ca.pem', 'init']]


def test_every_failing_repository_is_named(monkeypatch, files):
    checks = [{'name': name, 'user': getpass.getuser(), 'password_file': str(files / 'pass'),
               'passphrase': 'new', 'environment': {'RESTIC_REPOSITORY': f'/srv/{name}'}} for name in ('a', 'b', 'c')]
    wrong = (1, '', 'Fatal: wrong password or no key found')
    result, calls = run_list(monkeypatch, [wrong, (0, '{}', ''), wrong], checks, init=False)
    assert result['failed'] is True and len(calls) == 3
    assert [line.split(':')[0] for line in result['msg'].splitlines()] == ['restic_instances.a', 'restic_instances.c']


def test_a_remote_repository_seen_before_is_recorded_without_its_credentials(monkeypatch, files):
    remote = {'name': 'off', 'user': getpass.getuser(), 'password_file': str(files / 'pass'),
              'environment': {'RESTIC_REPOSITORY': 'rest:http://backup:rest-pw-77@server:8000/db1/'}}
    result, calls = run_list(monkeypatch, [(0, '{}', '')], [remote], init=False)
    assert result['repositories'][0]['state'] == 'present'
    state = (files / 'state' / 'opened.json').read_text()
    assert 'rest-pw-77' not in state and 'server' not in state and 'remote:' in state
    # Rotated credentials are the same repository: once it is gone, it is not initialised again.
    rotated = dict(remote, environment={'RESTIC_REPOSITORY': 'rest:http://backup:new-pw-88@server:8000/db1/'})
    result, calls = run_list(monkeypatch, [MISSING], [rotated])
    assert result['failed'] is True and len(calls) == 1
    assert 'restic_instances.off: the remote repository was opened on this host before' in result['msg']
    assert 'new-pw-88' not in result['msg']
    # Another location is a new repository.
    other = dict(remote, environment={'RESTIC_REPOSITORY': 'rest:http://backup:rest-pw-77@server:8000/db2/'})
    result, calls = run_list(monkeypatch, [MISSING, (0, 'created', '')], [other])
    assert result['changed'] is True and calls[1]['argv'][-1] == 'init'


def test_check_mode_without_restic_installed_checks_nothing(monkeypatch, files):
    check = {'name': 'app', 'user': getpass.getuser(), 'password_file': str(files / 'pass'), 'passphrase': 'x',
             'environment': {'RESTIC_REPOSITORY': '/srv/x'}}
    result, calls = run_list(monkeypatch, [], [check], check=True, init=False, restic='/nonexistent/restic')
    assert calls == [] and result['repositories'][0]['state'] == 'unknown' and result['changed'] is False


def test_check_mode_does_not_ask_a_server_that_does_not_know_this_host_yet(monkeypatch, files):
    """A client the backup server dropped and lists again (or a new one): check mode did not register its rest-server
    user, and the server would refuse its password. The role names those instances in pending_authorization: neither
    the check nor the init step asks their repositories (unknown, no change, no failure); the others are asked. Outside
    check mode (the user was registered first) every repository is asked, and a refusal still fails."""
    def remote(name):
        return {'name': name, 'user': getpass.getuser(), 'password_file': str(files / 'pass'), 'passphrase': 'pw-4',
                'environment': {'RESTIC_REPOSITORY': f'rest:http://db1:rest-pw-3@server:8000/db1/{name}/'}}

    result, calls = run_list(monkeypatch, [(0, '{}', '')], [remote('app'), remote('other')], check=True, init=False,
                             pending_authorization=['app'])
    assert result['failed'] is False and result['changed'] is False
    assert [(item['name'], item['state'], item['changed']) for item in result['repositories']] == [
        ('app', 'unknown', False), ('other', 'present', False)]
    assert len(calls) == 1 and calls[0]['env']['RESTIC_REPOSITORY'].endswith('/db1/other/')
    # The init step (the role hands it the instances the check did not find present): nothing would be initialised.
    result, calls = run_list(monkeypatch, [], [remote('app')], check=True, pending_authorization=['app'])
    assert calls == [] and result['changed'] is False
    assert result['repositories'][0] | {'password_file': None} == {
        'name': 'app', 'password_file': None, 'user': getpass.getuser(), 'changed': False, 'initialized': False,
        'state': 'unknown'}
    refused = (1, '', 'Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\n'
                      'Is there a repository at the following location?\n')
    result, calls = run_list(monkeypatch, [refused], [remote('app')], init=False, pending_authorization=['app'])
    assert result['failed'] is True and len(calls) == 1
    assert result['msg'].startswith("restic_instances.app: the repository's server refused the credentials")
    assert 'rest-pw-3' not in str(result) and 'pw-4' not in str(result)


def test_a_local_path_is_named_and_remote_credentials_are_masked(monkeypatch, files):
    checks = [{'name': 'app', 'user': getpass.getuser(), 'password_file': str(files / 'pass'), 'passphrase': 'pw-1',
               'repository': '/srv/restic/app', 'environment': {}},
              {'name': 'off', 'user': getpass.getuser(), 'password_file': str(files / 'pass'), 'passphrase': 'pw-2',
               'environment': {'RESTIC_REPOSITORY': 'rest:http://u:rest-pw-5@h:8000/x/'}}]
    answer = (1, '', 'Fatal: unable to open repository at rest:http://u:rest-pw-5@h:8000/x/: connection refused')
    result, calls = run_list(monkeypatch, [(1, '', 'Fatal: cannot read /srv/restic/app/config: I/O error'), answer],
                             checks, init=False)
    assert 'cannot read /srv/restic/app/config' in result['msg']
    assert 'rest-pw-5' not in result['msg'] and 'unable to open repository at ********: connection' in result['msg']


class ConcurrentRestic:
    """Answers by repository (restic cat config: missing until init made it; init: made), each call taking
    `seconds`; records the calls and how many ran at once at most."""

    def __init__(self, seconds=0.2, fail_init=()):
        self.seconds, self.fail_init = seconds, set(fail_init)
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.made, self.calls = set(), []

    def __call__(self, argv, data=None, environ_update=None, cwd=None, **kwargs):
        repository = environ_update['RESTIC_REPOSITORY']
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.calls.append((repository, argv[-1]))
        try:
            time.sleep(self.seconds)
            with self.lock:
                if argv[-1] == 'init':
                    if repository in self.fail_init:
                        return 1, '', f'Fatal: create repository at {repository} failed: permission denied'
                    if repository in self.made:  # a second init of one repository: what restic would say
                        return 1, '', 'Fatal: create key in repository failed: config file already exists'
                    self.made.add(repository)
                    return 0, 'created', ''
                return (0, '{}', '') if repository in self.made else MISSING
        finally:
            with self.lock:
                self.running -= 1


def new_repositories(count, shared=()):
    return [{'name': f'i{index}', 'user': getpass.getuser(), 'password_file': '/nonexistent/pass', 'passphrase': 'pw',
             'repository': f'/srv/restic/{"shared" if index in shared else index}', 'environment': {}}
            for index in range(count)]


@pytest.mark.parametrize('jobs, most', [(None, os.cpu_count() or 1), (0, os.cpu_count() or 1), (3, 3), (1, 1)])
def test_new_repositories_are_initialised_concurrently_bounded_by_jobs(monkeypatch, files, jobs, most):
    fake = ConcurrentRestic()
    params = {} if jobs is None else {'jobs': jobs}
    result, dummy = run_list(monkeypatch, None, new_repositories(6), fake=fake, **(params or {'jobs': None}))
    assert result['failed'] is False and result['changed'] is True
    assert [item['name'] for item in result['repositories']] == [f'i{index}' for index in range(6)]  # in order
    assert all(item['initialized'] for item in result['repositories'])
    assert fake.most == min(most, 6)
    # Each repository: probed, then initialised, its own calls in that order.
    for index in range(6):
        assert [call for repo, call in fake.calls if repo == f'/srv/restic/{index}'] == ['config', 'init']


def test_a_repository_two_instances_share_is_initialised_once(monkeypatch, files):
    fake = ConcurrentRestic(seconds=0.05)
    result, dummy = run_list(monkeypatch, None, new_repositories(5, shared=(1, 3)), fake=fake, jobs=4)
    assert result['failed'] is False
    assert [item['initialized'] for item in result['repositories']] == [True, True, True, False, True]
    assert [call for repo, call in fake.calls if repo == '/srv/restic/shared'] == ['config', 'init', 'config']


def test_concurrent_failures_name_each_instance_in_order_and_the_others_count(monkeypatch, files):
    fake = ConcurrentRestic(seconds=0.05, fail_init={'/srv/restic/1', '/srv/restic/3'})
    result, dummy = run_list(monkeypatch, None, new_repositories(4), fake=fake, jobs=4)
    assert result['failed'] is True and result['changed'] is True
    assert [line.split(':')[0] for line in result['msg'].splitlines()] == ['restic_instances.i1', 'restic_instances.i3']
    assert 'restic init failed (rc=1): Fatal: create repository at /srv/restic/3 failed' in result['msg']
    assert fake.made == {'/srv/restic/0', '/srv/restic/2'}


def test_check_mode_probes_concurrently_and_initialises_nothing(monkeypatch, files):
    fake = ConcurrentRestic(seconds=0.05)
    result, dummy = run_list(monkeypatch, None, new_repositories(4), check=True, fake=fake, jobs=4)
    assert result['changed'] is True and all(item['initialized'] for item in result['repositories'])
    assert {call for repo, call in fake.calls} == {'config'} and fake.made == set()


def s3_repository(files, secret):
    return {'name': 's3', 'user': getpass.getuser(), 'password_file': str(files / 'pass'),
            'environment': {'RESTIC_REPOSITORY': 's3:http://s3.example:9000/restic/db1',
                            'AWS_ACCESS_KEY_ID': 'backup-db1', 'AWS_SECRET_ACCESS_KEY': secret}}


def test_an_s3_secret_the_server_refuses_initialises_nothing(monkeypatch, files):
    """restic 0.14 says "Is there a repository at the following location?" also when the S3 server refuses the
    key: the converge stops naming the cause instead of initialising (or calling the repository vanished)."""
    refused = (1, '', 'Fatal: unable to open config file: Stat: The request signature we calculated does not match '
                      'the signature you provided. Check your key and signing method.\n'
                      'Is there a repository at the following location?\ns3:http://s3.example:9000/restic/db1\n')
    result, calls = run_list(monkeypatch, [refused], [s3_repository(files, 's3-secret-71')])
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith("restic_instances.s3: the repository's server refused the credentials")
    assert 'The request signature we calculated does not match' in result['msg']
    assert [call['argv'][-2:] for call in calls] == [['cat', 'config']]  # probed, never initialised
    assert calls[0]['env']['AWS_SECRET_ACCESS_KEY'] == 's3-secret-71'
    assert 's3-secret-71' not in str(result)


def test_an_s3_probe_that_restic_retries_until_the_timeout_initialises_nothing(monkeypatch, files):
    """restic 0.18 retries the refusing server until coreutils' timeout (the module's ``timeout``) ends it."""
    retry = ('Stat(<config/>) returned error, retrying after 2.4s: Stat: The request signature we calculated does not '
             'match the signature you provided. Check your key and signing method.')
    timed_out = (124, '', f'{retry}\n{retry}\nsignal terminated received, cleaning up\n'
                          'Fatal: unable to open config file: context canceled\n'
                          'Is there a repository at the following location?\n')
    result, calls = run_list(monkeypatch, [timed_out], [s3_repository(files, 's3-secret-72')], timeout=30)
    assert result['failed'] is True and len(calls) == 1 and calls[0]['argv'][:2] == ['timeout', '30']
    assert result['msg'] == f'restic_instances.s3: restic did not answer within 30 s (rc=124): the repository is ' \
                            f'out of reach or refuses the credentials; restic said: {retry}'


def test_an_s3_repository_not_in_its_bucket_yet_is_initialised(monkeypatch, files):
    missing = (10, '', 'Fatal: repository does not exist: unable to open config file: Stat: The specified key does '
                       'not exist.\nIs there a repository at the following location?\n')
    result, calls = run_list(monkeypatch, [missing, (0, 'created restic repository', '')],
                             [s3_repository(files, 's3-secret-73')])
    assert result['failed'] is False and result['changed'] is True
    assert [call['argv'][-1] for call in calls] == ['config', 'init']
