# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The actions that run a host module on secrets in one task: no_log on the host and for a success, a failure's
message shown as it is (the roles used a no_log task and a fail task for each)."""

from __future__ import annotations

import json
import shlex
import traceback
from unittest import mock

import pytest

from ansible.plugins.action import ActionBase
from ansible_collections.selfhost.backup.plugins.action import borg_repository, job_paths, provider_plan, restic_repository
from ansible_collections.selfhost.backup.plugins.module_utils import _masking
from ansible_collections.selfhost.backup.plugins.plugin_utils import _secret_module_action

SECRET = 'p\'a"s\\s$w`o%rd'
UNCHANGED = 'Nothing on this host was changed: the installed secrets, units and restore scripts stay as they are.'


def run_action(plugin_module, args, returned):
    """Run the action as the task executor would; the module run on the host is the only thing stubbed. Returns the
    result and the module arguments as they would reach the host."""
    task = mock.MagicMock(args=args, async_val=0, check_mode=False, no_log=False, action='x', diff=False)
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = plugin_module.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    sent = {}

    def execute_module(module_name, module_args, task_vars):
        sent.update(module_args)
        # What ActionBase._execute_module does before it ships the module.
        plugin._update_module_args(module_name, sent, task_vars)
        return dict(returned)

    with mock.patch.object(ActionBase, '_update_module_args'), \
            mock.patch.object(plugin_module.ActionModule, '_execute_module', side_effect=execute_module) as ran:
        result = plugin.run(task_vars={})
    assert ran.call_args.kwargs['module_name'] == plugin.MODULE
    return result, sent


CHECK = {'init': False, 'repositories': [{'name': 'app', 'passphrase': SECRET}]}


def test_the_repository_check_runs_no_log_and_its_success_is_no_log():
    result, sent = run_action(restic_repository, CHECK, {'changed': False, 'repositories': [
        {'name': 'app', 'state': 'present'}]})
    assert sent['_ansible_no_log'] is True
    assert result['_ansible_no_log'] is True and result['repositories'] == [{'name': 'app', 'state': 'present'}]


def test_a_failed_check_shows_its_message_alone_and_says_nothing_changed():
    result, dummy = run_action(restic_repository, CHECK, {
        'failed': True, 'msg': 'restic_instances.app: the passphrase does not open the existing repository.',
        'invocation': {'module_args': CHECK}})
    assert result == {'failed': True, 'changed': False,
                      'msg': f'restic_instances.app: the passphrase does not open the existing repository. {UNCHANGED}'}


def test_restic_init_reads_its_secrets_from_files_and_shows_its_result():
    args = {'repositories': [{'name': 'app', 'password_file': '/etc/selfhost-backup/restic/app/passphrase'}]}
    result, sent = run_action(restic_repository, args, {'changed': True, 'repositories': [{'name': 'app'}]})
    assert '_ansible_no_log' not in sent and not result.get('_ansible_no_log')
    assert result['changed'] is True
    failed, dummy = run_action(restic_repository, dict(args, init='true'), {'failed': True, 'msg': 'init failed'})
    assert failed['msg'] == 'init failed'


def test_the_borg_check_is_always_no_log_and_says_nothing_changed():
    args = {'repositories': [{'name': 'app', 'passphrase': SECRET}]}
    result, sent = run_action(borg_repository, args, {'changed': False})
    assert sent['_ansible_no_log'] is True and result['_ansible_no_log'] is True
    failed, dummy = run_action(borg_repository, args, {'failed': True})
    assert failed['msg'] == f'selfhost.backup.borg_repository failed {UNCHANGED}'


@pytest.mark.parametrize('secret_files, no_log', [
    ([{'path': '/etc/x/passphrase', 'content': SECRET}], True),
    ([], False),
])
def test_job_paths_is_no_log_when_it_writes_secrets(secret_files, no_log):
    args = {'directories': [], 'secret_files': secret_files, 'prune': {}}
    result, sent = run_action(job_paths, args, {'changed': True, 'diff': []})
    assert sent.get('_ansible_no_log', False) is no_log and result.get('_ansible_no_log', False) is no_log
    failed, dummy = run_action(job_paths, args, {'failed': True, 'msg': '/srv/x is a symbolic link', 'paths': ['x']})
    assert failed == {'failed': True, 'changed': False, 'msg': '/srv/x is a symbolic link'}


def test_a_plan_is_returned_no_log_and_a_planning_failure_shows_its_message():
    task = mock.MagicMock(args={'provider': 'restic', 'instances': {}}, async_val=0, check_mode=False)
    plugin = provider_plan.ActionModule(task, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), mock.MagicMock(),
                                        None)
    assert plugin.run(task_vars={'inventory_hostname': 'db1'})['_ansible_no_log'] is True
    with mock.patch.object(provider_plan._plan, 'plan', side_effect=provider_plan._plan.PlanError('no way')):
        failed = plugin.run(task_vars={'inventory_hostname': 'db1'})
    assert failed['failed'] is True and failed['msg'] == 'no way' and not failed.get('_ansible_no_log')


# A module that crashed (a traceback, output that is not JSON) masked nothing: its output is kept, every value of
# the task's no_log options masked however Python wrote it. Each secret carries a marker that every escaping leaves
# as it is, so the marker's absence shows that no form of the secret is left.
BOTH_QUOTES = 'Zq1both\'a"s\\s$w`o%rd ü€ Zq1both'
SINGLE_QUOTE = "Zq2single'it\\s $HOME `id` 100% é Zq2single"
DOUBLE_QUOTE = 'Zq3double"x\\n$1`%s` ß Zq3double'
MARKERS = ('Zq1', 'Zq2', 'Zq3')
SECRET_FILE = '/etc/selfhost-backup/restic/app/passphrase'


def crash_output(secrets):
    """stdout and stderr of a module that crashed holding ``secrets``: the start of a JSON result (escaped both
    ways), then tracebacks whose messages hold each secret as Python writes it (as it is, in a repr between
    either quote, as bytes, ASCII-escaped, shell-quoted)."""
    stdout = ''.join('{"invocation": {"module_args": {"passphrase": %s, "content": %s, '
                     % (json.dumps(secret), json.dumps(secret, ensure_ascii=False)) for secret in secrets)
    stderr = []
    for secret in secrets:
        for exc in (KeyError(secret), KeyError(f"it's {secret}"), KeyError(f'say "{secret}"'),
                    ValueError(f'cannot parse {secret} in {SECRET_FILE}'), ValueError(secret.encode()),
                    ValueError(ascii(secret)), ValueError({'passphrase': secret}),
                    RuntimeError(f'failed: {shlex.join(["restic", "--password", secret])}')):
            try:
                raise exc
            except Exception:  # pylint: disable=broad-exception-caught
                stderr.append(traceback.format_exc())
    return stdout, ''.join(stderr)


def crashed(secrets):
    """The result ActionBase._execute_module returns for that crash (built by Ansible's own parser)."""
    stdout, stderr = crash_output(secrets)
    parser = ActionBase.__new__(restic_repository.ActionModule)
    parser._used_interpreter = '#!/usr/bin/python3'
    returned = parser._parse_returned_data({'rc': 1, 'stdout': stdout, 'stderr': stderr}, 'legacy')
    assert returned['failed'] is True and returned['module_stderr'] == stderr
    assert all(marker in stdout and marker in stderr for marker in MARKERS[:len(secrets)])
    return returned


def assert_kept_and_masked(result):
    assert result['failed'] is True and result['changed'] is False and result['rc'] == 1
    assert result['msg'].startswith('Module result deserialization failed')
    assert result['module_stdout'].startswith('{"invocation": {"module_args": {"passphrase": "********"')
    stderr = result['module_stderr']
    assert stderr.startswith('Traceback (most recent call last):\n')
    for kept in ("KeyError: '********'", "KeyError: \"it's ********\"", 'KeyError: \'say "********"\'',
                 f'ValueError: cannot parse ******** in {SECRET_FILE}', "ValueError: b'********'",
                 "ValueError: {'passphrase': '********'}", 'RuntimeError: failed: restic --password ********'):
        assert kept in stderr, kept
    text = json.dumps(result, ensure_ascii=False) + json.dumps(result) + str(result)
    assert not [marker for marker in MARKERS if marker in text]


def test_a_crashed_repository_check_keeps_its_output_with_every_secret_masked():
    args = {'init': False, 'repositories': [
        {'name': 'app', 'passphrase': BOTH_QUOTES, 'environment': {
            'RESTIC_REPOSITORY': 's3:https://s3.example.org/app', 'AWS_SECRET_ACCESS_KEY': SINGLE_QUOTE}},
        {'name': 'shop', 'passphrase': DOUBLE_QUOTE, 'environment': {'RESTIC_REPOSITORY': '/srv/shop'}}]}
    result, dummy = run_action(restic_repository, args, crashed([BOTH_QUOTES, SINGLE_QUOTE, DOUBLE_QUOTE]))
    assert_kept_and_masked(result)
    assert result['msg'].endswith(UNCHANGED) and not result.get('_ansible_no_log')


def test_a_crashed_borg_check_keeps_its_output_with_every_secret_masked():
    args = {'repositories': [{'name': 'app', 'repository': '/srv/app', 'marker': '/x', 'passphrase': BOTH_QUOTES},
                             {'name': 'b', 'repository': '/srv/b', 'marker': '/y', 'passphrase': SINGLE_QUOTE},
                             {'name': 'c', 'repository': '/srv/c', 'marker': '/z', 'passphrase': DOUBLE_QUOTE}]}
    result, dummy = run_action(borg_repository, args, crashed([BOTH_QUOTES, SINGLE_QUOTE, DOUBLE_QUOTE]))
    assert_kept_and_masked(result)


def test_a_crashed_job_paths_keeps_its_output_with_every_secret_file_masked_and_the_paths_shown():
    args = {'directories': [], 'prune': {}, 'secret_files': [
        {'path': SECRET_FILE, 'content': BOTH_QUOTES}, {'dest': '/etc/x/b', 'content': SINGLE_QUOTE},
        {'path': '/etc/x/c', 'content': DOUBLE_QUOTE, 'mode': '0600'}]}
    result, dummy = run_action(job_paths, args, crashed([BOTH_QUOTES, SINGLE_QUOTE, DOUBLE_QUOTE]))
    assert_kept_and_masked(result)


def test_without_secrets_a_crash_is_shown_as_it_is():
    args = {'repositories': [{'name': 'app', 'password_file': SECRET_FILE}]}
    returned = crashed([BOTH_QUOTES])
    result, dummy = run_action(restic_repository, args, returned)
    assert result['module_stdout'] == returned['module_stdout'] and result['module_stderr'] == returned['module_stderr']


def test_a_module_s_own_failure_message_is_masked_where_it_left_a_secret_escaped():
    args = {'init': False, 'repositories': [{'name': 'app', 'passphrase': SINGLE_QUOTE}]}
    result, dummy = run_action(restic_repository, args, {'failed': True, 'msg': f'bad value {SINGLE_QUOTE!r}'})
    assert result == {'failed': True, 'changed': False, 'msg': f'bad value "********" {UNCHANGED}'}


def test_a_short_secret_masks_the_module_s_message_but_not_the_sentence_this_action_adds():
    # A region given as a backend secret, as the S3 recipe does: 'on' stands in the module's message and in the
    # action's own sentence; only the module's message may be masked.
    args = {'init': False,
            'repositories': [{'name': 'app', 'passphrase': SECRET, 'environment': {'AWS_DEFAULT_REGION': 'on'}}]}
    result, dummy = run_action(restic_repository, args, {'failed': True, 'msg': 'the server on port 9000 refused'})
    assert result['msg'] == f'the server ******** port 9000 refused {UNCHANGED}'


@pytest.mark.parametrize('secret', [BOTH_QUOTES, SINGLE_QUOTE, DOUBLE_QUOTE, 'plain', '1234'])
def test_every_written_form_of_a_secret_is_masked(secret):
    mask = _masking.masker([secret])
    for written in (secret, json.dumps(secret), json.dumps(secret, ensure_ascii=False), repr(secret),
                    repr(secret.encode()), ascii(secret), shlex.quote(secret), repr([secret]), repr(f'{secret}"\'')):
        assert 'Zq' not in mask(written) and secret not in mask(written), written
        assert '********' in mask(written)


def test_the_secrets_are_the_values_of_the_no_log_options_at_any_depth():
    spec = restic_repository.ActionModule.ARGUMENT_SPEC
    args = {'password_file': '/p', 'repositories': [
        {'passphrase': 'one', 'environment': {'A': 'two', 'B': 3, 'C': True}, 'password_file': '/q'},
        'malformed', {'name': 'n'}]}
    assert _secret_module_action.secret_values(spec, args) == {'one', 'two', '3'}
    assert _secret_module_action.secret_values(job_paths.ActionModule.ARGUMENT_SPEC, {'secret_files': [
        {'path': '/a', 'content': 'four', 'mode': '0600'}], 'prune': {'keep': ['/k']}}) == {'four'}
    assert _masking.masker([])('text') == 'text'


def module_exception(exc, capsys):
    """What ActionBase._execute_module returns when the module raised ``exc`` (ansible-core >= 2.19): the AnsiballZ
    wrapper's own handler prints the error summary as the module's result, which Ansible's own parser reads."""
    # pylint: disable-next=import-outside-toplevel
    from ansible.module_utils._internal._ansiballz._loader import _handle_exception
    try:
        raise exc
    except Exception as raised:  # pylint: disable=broad-exception-caught
        with pytest.raises(SystemExit):
            _handle_exception(raised, 'legacy')
    parser = ActionBase.__new__(restic_repository.ActionModule)
    parser._used_interpreter = '#!/usr/bin/python3'
    returned = parser._parse_returned_data({'rc': 1, 'stdout': capsys.readouterr().out, 'stderr': ''}, 'legacy')
    assert returned['failed'] is True and 'msg' not in returned and 'module_stderr' not in returned
    return returned


def chained(secret):
    try:
        raise ValueError(f'cannot parse {secret!r}')
    except ValueError as cause:
        try:
            raise RuntimeError(f'reading {SECRET_FILE} failed') from cause
        except RuntimeError as exc:
            return exc


def test_a_python_exception_in_the_module_shows_its_message_masked(capsys):
    """ansible-core 2.19 returns a module's uncaught exception as an error summary, with no msg and no output: the
    failure shows the exception's message (and its cause's), masked, instead of a bare '<module> failed'."""
    args = {'init': False, 'repositories': [{'name': 'app', 'passphrase': SINGLE_QUOTE}]}
    returned = module_exception(chained(SINGLE_QUOTE), capsys)
    assert 'Zq2' in str(returned['exception'])
    result, dummy = run_action(restic_repository, args, returned)
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'] == f'reading {SECRET_FILE} failed: cannot parse "********" {UNCHANGED}'
    assert type(result['exception']) is type(returned['exception'])  # pylint: disable=unidiomatic-typecheck
    assert 'Zq2' not in str(result['exception']) and 'Zq2' not in str(result)
    assert result['exception'].event.chain.event.msg == 'cannot parse "********"'
    # Without secrets in the task the exception is shown as it is.
    returned = module_exception(KeyError('plain'), capsys)
    result, dummy = run_action(job_paths, {'directories': [], 'secret_files': [], 'prune': {}}, returned)
    assert result['msg'] == "'plain'" and result['exception'] == returned['exception']


def test_a_module_s_own_failure_keeps_its_message_only(capsys):
    """fail_json inside an except block carries the exception too (ansible-core 2.19): the failure shows the module's
    message alone, as before."""
    returned = dict(module_exception(KeyError('detail'), capsys), msg='restic_instances.app: no way')
    result, dummy = run_action(restic_repository, CHECK, returned)
    assert result == {'failed': True, 'changed': False, 'msg': f'restic_instances.app: no way {UNCHANGED}'}


def test_a_secret_is_masked_as_the_module_uses_it_without_its_trailing_line_break():
    """restic_repository uses an inline secret without its trailing line breaks (as read from its file), and an
    environment secret may end with one (a vault value encrypted from echo's output): what the module quotes of it
    is masked too."""
    args = {'init': False, 'repositories': [{'name': 'app', 'passphrase': 'pw', 'environment': {
        'AWS_SECRET_ACCESS_KEY': 'Zq4key it\n', 'B': ' Zq5spaced\t'}}]}
    stderr = "KeyError: 'Zq4key it'\nValueError: Zq5spaced\nValueError: ' Zq5spaced\\t'\n"
    result, dummy = run_action(restic_repository, args, {'failed': True, 'msg': 'MODULE FAILURE', 'rc': 1,
                                                         'module_stdout': '', 'module_stderr': stderr})
    # (the first one shell-quoted: the quotes go with it)
    assert result['module_stderr'] == "KeyError: ********\nValueError: ********\nValueError: '********'\n"
