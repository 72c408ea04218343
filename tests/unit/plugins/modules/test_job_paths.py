# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""job_paths end to end against a temporary root: directories, secret files, pruning; no secret in any output."""

from __future__ import annotations

import getpass
import grp
import json
import os
import stat

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfhost.backup.plugins.modules import job_paths

SECRET = 'correct-horse-battery-42'
USER = getpass.getuser()
GROUP = grp.getgrgid(os.getegid()).gr_name


def run(root, check=False, diff=False, **params):
    args = dict(params, _ansible_check_mode=check, _ansible_diff=diff, _ansible_remote_tmp=str(root / 'remote-tmp'))
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:  # exit_json or fail_json (conftest.py): the result unmasked
            job_paths.main()
    return info.value.result


def secret(path, content=SECRET):
    return {'path': str(path), 'content': content, 'owner': USER, 'group': GROUP}


def params(root, content=SECRET):
    secrets = root / 'etc' / 'app'
    return {
        'directories': [
            {'path': str(root / 'srv')},
            {'path': str(root / 'srv' / 'app'), 'owner': USER, 'mode': '0700'},
            {'path': str(secrets), 'owner': USER, 'group': GROUP, 'mode': '0700'},
        ],
        'secret_files': [secret(secrets / 'passphrase', content)],
        'prune': {'directories': [str(secrets)], 'keep': [str(secrets / 'ssh_key')]},
    }


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_run_creates_everything_and_second_changes_nothing(tmp_path):
    result = run(tmp_path, **params(tmp_path))
    assert result['changed'] is True
    assert result['directories'] == [str(tmp_path / 'srv'), str(tmp_path / 'srv' / 'app'), str(tmp_path / 'etc' / 'app')]
    assert result['secret_files'] == [str(tmp_path / 'etc' / 'app' / 'passphrase')]
    assert (tmp_path / 'etc' / 'app' / 'passphrase').read_text() == SECRET
    assert mode(tmp_path / 'etc' / 'app' / 'passphrase') == 0o600
    assert mode(tmp_path / 'etc' / 'app') == 0o700 and mode(tmp_path / 'srv' / 'app') == 0o700
    again = run(tmp_path, diff=True, **params(tmp_path))
    assert again == {'changed': False, 'directories': [], 'secret_files': [], 'removed': [], 'diff': []}


def test_an_existing_parent_is_left_alone(tmp_path):
    (tmp_path / 'srv').mkdir(mode=0o751)
    os.chmod(tmp_path / 'srv', 0o751)
    run(tmp_path, **params(tmp_path))
    assert mode(tmp_path / 'srv') == 0o751


def test_check_mode_changes_nothing_and_diff_has_no_secret(tmp_path):
    result = run(tmp_path, check=True, diff=True, **params(tmp_path))
    assert result['changed'] is True
    assert not (tmp_path / 'srv').exists() and not (tmp_path / 'etc').exists()
    assert [entry['after_header'] for entry in result['diff']] == result['directories'] + result['secret_files']
    assert all(entry['before'] == 'state: absent\n' for entry in result['diff'])
    assert 'mode: 0600' in result['diff'][-1]['after'] and 'content: (secret, not shown, changed)' in result['diff'][-1]['after']
    assert SECRET not in json.dumps(result)


def test_changed_content_is_rewritten_and_the_diff_hides_it(tmp_path):
    run(tmp_path, **params(tmp_path))
    result = run(tmp_path, diff=True, **params(tmp_path, content='new-secret-77'))
    assert result['changed'] is True and result['secret_files'] == [str(tmp_path / 'etc' / 'app' / 'passphrase')]
    assert (tmp_path / 'etc' / 'app' / 'passphrase').read_text() == 'new-secret-77'
    (entry,) = result['diff']
    assert entry['before'].endswith('content: (secret, not shown)\n')
    assert entry['after'].endswith('content: (secret, not shown, changed)\n')
    assert SECRET not in json.dumps(result) and 'new-secret-77' not in json.dumps(result)
    # no temp file left behind next to it
    assert sorted(os.listdir(tmp_path / 'etc' / 'app')) == ['passphrase']


def test_wrong_mode_is_fixed_in_place(tmp_path):
    run(tmp_path, **params(tmp_path))
    path = tmp_path / 'etc' / 'app' / 'passphrase'
    os.chmod(path, 0o644)
    os.chmod(tmp_path / 'srv' / 'app', 0o755)
    result = run(tmp_path, diff=True, **params(tmp_path))
    assert result['secret_files'] == [str(path)] and result['directories'] == [str(tmp_path / 'srv' / 'app')]
    assert mode(path) == 0o600 and mode(tmp_path / 'srv' / 'app') == 0o700
    assert 'mode: 0644' in result['diff'][1]['before'] and 'not shown)\n' in result['diff'][1]['after']


def test_prune_removes_only_unwanted_regular_files(tmp_path):
    run(tmp_path, **params(tmp_path))
    secrets = tmp_path / 'etc' / 'app'
    for name in ('env.OLD', 'ssh_key', '.hidden'):
        (secrets / name).write_text('x')
    (secrets / 'subdir').mkdir()
    os.symlink('/etc/hostname', secrets / 'link')
    result = run(tmp_path, check=True, diff=True, **params(tmp_path))
    assert result['removed'] == [str(secrets / 'env.OLD')]
    assert (secrets / 'env.OLD').exists()
    assert result['diff'] == [{'before_header': str(secrets / 'env.OLD'), 'after_header': str(secrets / 'env.OLD'),
                               'before': result['diff'][0]['before'], 'after': 'state: absent\n'}]
    assert run(tmp_path, **params(tmp_path))['removed'] == [str(secrets / 'env.OLD')]
    assert sorted(os.listdir(secrets)) == ['.hidden', 'link', 'passphrase', 'ssh_key', 'subdir']


def test_prune_skips_a_missing_directory(tmp_path):
    result = run(tmp_path, prune={'directories': [str(tmp_path / 'nope')]})
    assert result == {'changed': False, 'directories': [], 'secret_files': [], 'removed': []}


def test_prune_removes_the_unlisted_secrets_directories_with_their_files(tmp_path):
    run(tmp_path, **params(tmp_path))
    etc = tmp_path / 'etc'
    gone = etc / 'gone'
    (gone / 'keys').mkdir(parents=True)
    (gone / 'passphrase').write_text(SECRET)
    (gone / 'keys' / 'ssh_key').write_text(SECRET)
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'keep-me').write_text('x')
    os.symlink(outside, gone / 'planted-link')  # removed as a link, never followed
    os.symlink(outside, etc / 'a-link')  # a link is no directory: left alone
    (etc / '.hidden').mkdir()
    (etc / 'a-file').write_text('x')
    wanted = params(tmp_path)
    wanted['prune']['subdirectories_of'] = [str(etc), str(tmp_path / 'missing')]
    checked = run(tmp_path, check=True, diff=True, **wanted)
    assert checked['changed'] is True and checked['removed'] == [str(gone)] and gone.exists()
    assert [(entry['before_header'], entry['after']) for entry in checked['diff']] == [
        (str(gone), 'state: absent (with everything in it)\n')]
    assert SECRET not in json.dumps(checked)
    assert run(tmp_path, **wanted)['removed'] == [str(gone)]
    assert sorted(os.listdir(etc)) == ['.hidden', 'a-file', 'a-link', 'app']
    assert os.listdir(outside) == ['keep-me'] and (etc / 'app' / 'passphrase').read_text() == SECRET
    assert run(tmp_path, **wanted)['changed'] is False


def test_the_secret_is_masked_in_the_invocation():
    content = job_paths.ARGUMENT_SPEC['secret_files']['options']['content']
    assert content['no_log'] is True


@pytest.mark.parametrize('change, message', [
    ({'directories': [{'path': '/x', 'owner': 'no-such-user-here'}]}, "the user 'no-such-user-here' does not exist"),
    ({'directories': [{'path': '/x', 'group': 'no-such-group-here'}]}, "the group 'no-such-group-here' does not exist"),
    ({'directories': [{'path': '/x', 'mode': 'rwx'}]}, "mode 'rwx' is not an octal number"),
    ({'directories': [{'path': '/x', 'mode': '77777'}]}, 'out of range'),
])
def test_bad_entries_fail_before_any_change(tmp_path, change, message):
    result = run(tmp_path, **change)
    assert result['failed'] is True and message in result['msg'] and result['changed'] is False


def test_a_file_where_a_directory_should_be(tmp_path):
    (tmp_path / 'srv').write_text('x')
    result = run(tmp_path, directories=[{'path': str(tmp_path / 'srv')}])
    assert result['failed'] is True and 'is not a directory' in result['msg']


def test_a_directory_where_a_secret_should_be(tmp_path):
    (tmp_path / 'pass').mkdir()
    result = run(tmp_path, secret_files=[secret(tmp_path / 'pass')])
    assert result['failed'] is True and 'is not a regular file' in result['msg'] and SECRET not in result['msg']


def test_a_write_error_is_reported_as_changed_without_the_secret(tmp_path):
    # the secret's directory is missing and not listed: the write fails after the directory was created
    result = run(tmp_path, directories=[{'path': str(tmp_path / 'd')}], secret_files=[secret(tmp_path / 'nope' / 'pass')])
    assert result['failed'] is True and result['changed'] is True and SECRET not in json.dumps(result)


def test_dest_is_an_alias_and_numeric_ids_work(tmp_path):
    entry = {'dest': str(tmp_path / 'pass'), 'content': SECRET, 'owner': str(os.geteuid()), 'group': str(os.getegid()),
             'mode': 0o640}
    assert run(tmp_path, secret_files=[entry])['changed'] is True
    assert mode(tmp_path / 'pass') == 0o640
    assert run(tmp_path, secret_files=[entry])['changed'] is False


def test_the_real_output_masks_the_content_in_the_invocation(tmp_path, monkeypatch, capsys):
    monkeypatch.undo()  # the real exit_json: what Ansible receives
    args = dict(params(tmp_path), _ansible_remote_tmp=str(tmp_path / 'remote-tmp'))
    # as the roles pass them: the secret filters' dest and content
    args['secret_files'] = [{'dest': entry['path'], 'content': entry['content'], 'owner': USER, 'group': GROUP}
                            for entry in args['secret_files']]
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            job_paths.main()
    output = json.loads(capsys.readouterr().out)
    assert output['changed'] is True
    assert output['invocation']['module_args']['secret_files'][0]['content'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert SECRET not in json.dumps(output)


# Hostile review (issue 16): what prune.subdirectories_of must not remove.

def test_subdirectories_of_spares_a_subdirectory_holding_a_wanted_path(tmp_path):
    """A directory, a secret file or a kept file deeper in an unlisted subdirectory is wanted: the subdirectory
    stays (else each run writes the secret and removes it again, never idempotent, and the job has no secret)."""
    top = tmp_path / 'secrets'
    (top / 'restic' / 'app').mkdir(parents=True)
    (top / 'borg' / 'app').mkdir(parents=True)
    (top / 'borg' / 'app' / 'ssh_key').write_text(SECRET)
    (top / 'gone').mkdir()
    wanted = {
        'directories': [{'path': str(top / 'restic' / 'app')}],
        'secret_files': [secret(top / 'restic' / 'app' / 'passphrase')],
        'prune': {'keep': [str(top / 'borg' / 'app' / 'ssh_key')], 'subdirectories_of': [str(top)]},
    }
    result = run(tmp_path, **wanted)
    assert result['removed'] == [str(top / 'gone')]
    assert (top / 'restic' / 'app' / 'passphrase').read_text() == SECRET
    assert (top / 'borg' / 'app' / 'ssh_key').read_text() == SECRET
    assert run(tmp_path, **wanted)['changed'] is False


@pytest.mark.parametrize('parent', ['/', '/etc', '/var/lib', '/usr/local', 'relative/secrets', '/etc/../etc'])
def test_subdirectories_of_refuses_a_system_directory_or_an_unnormalised_path(tmp_path, parent):
    """subdirectories_of: [/etc] with a short directories list would be rm -rf of /etc/ssh, /etc/systemd, ...;
    a relative path would be read against the module's working directory. Refused before any change."""
    result = run(tmp_path, check=True, prune={'subdirectories_of': [parent]})
    assert result.get('failed') is True and result['changed'] is False
    assert 'subdirectories_of' in result['msg']


def test_subdirectories_of_refuses_a_parent_that_is_a_symbolic_link(tmp_path):
    """A parent that is a link lists the subdirectories of its target: a link to /etc would remove /etc's."""
    target = tmp_path / 'target'
    (target / 'precious').mkdir(parents=True)
    os.symlink(target, tmp_path / 'parent')
    result = run(tmp_path, prune={'subdirectories_of': [str(tmp_path / 'parent')]})
    assert result.get('failed') is True and result['changed'] is False
    assert (target / 'precious').is_dir()
