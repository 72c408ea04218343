# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""selfhost-backup-server-maintenance (roles/backup_server/files/server-maintenance.sh) against fake tools: the
data files the planner writes (plugins/plugin_utils/_servers.py) drive it; each instance's retention, compact and
check run as the repository's owner with the credential as a file; one failure does not stop the others; the
server's restic key is added once. The fleet molecule scenario runs it against real restic and borg."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _servers

SCRIPT = Path(__file__).resolve().parents[3] / 'roles' / 'backup_server' / 'files' / 'server-maintenance.sh'
REQUEST = {'user': 'postgres', 'backup_name': 'dump', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}
# Each fake tool logs its argv, and the secret it was handed, one line per call. The fake restic's help (not logged)
# names --retry-lock only when FAKE_RETRY_LOCK is set, as restic 0.16 and later do (Debian 12's 0.14 does not).
FAKE_TOOL = '''#!/bin/bash
if [ "$(basename "$0") $*" = "restic --help" ]; then
  echo "Flags:"
  echo "      --no-cache                   do not use a local cache"
  [ -z "${FAKE_RETRY_LOCK:-}" ] || echo "      --retry-lock duration        retry to lock the repository if it is already locked"
  exit 0
fi
secret=""
[ -n "${RESTIC_PASSWORD_FILE:-}" ] && secret=$(cat "$RESTIC_PASSWORD_FILE")
[ -n "${BORG_PASSCOMMAND:-}" ] && secret=$($BORG_PASSCOMMAND)
echo "$(basename "$0") $* secret=$secret repo=${RESTIC_REPOSITORY:-${BORG_REPO:-}}" >> "$FAKE_LOG"
case " $* " in *" $FAKE_FAIL "*) echo "${FAKE_FAIL_MESSAGE:-failed}" >&2; exit 1 ;; esac
if [ "$(basename "$0")" = restic ] && [ "$1 $2 $3" = "--no-cache --no-lock cat" ]; then
  [ "$secret" = "$(cat "$FAKE_OPENS" 2>/dev/null)" ] || exit 1
fi
exit 0
'''


@pytest.fixture
def server(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('restic', 'borg'):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    # setpriv and chown stand in for the switch to the repository's owner (the test runs unprivileged).
    (bin_dir / 'setpriv').write_text('#!/bin/bash\nwhile [ "$1" != -- ]; do shift; done; shift\nexec "$@"\n')
    (bin_dir / 'chown').write_text('#!/bin/bash\nexit 0\n')
    for tool in ('setpriv', 'chown'):
        (bin_dir / tool).chmod(0o755)
    for directory in ('instances', 'credentials', 'borg'):
        (tmp_path / directory).mkdir()
    return tmp_path


def register(server: Path, provider: str, client: str, retention: dict, repository_exists: bool = True) -> dict:
    settings = _contract.fill_defaults({'repository': {'server': 'vault'}, 'passphrase': 'x', 'retention': retention},
                                       _contract.load_provider_schema(provider))
    dummy, (registration,) = _servers.resolve(
        provider, {'app': {'request': REQUEST, 'settings': settings}}, client,
        {'vault': {'restic_password': 'pw', 'host_key': 'ssh-ed25519 AAAA', 'restic_directory': str(server / 'restic'),
                   'borg_directory': str(server / 'borgrepos'), 'restic_owner': os.environ.get('USER', 'root'),
                   'borg_user': os.environ.get('USER', 'root')}})
    data = registration['data'].replace(_servers.CREDENTIALS_DIR, str(server / 'credentials'))
    (server / 'instances' / f'{provider}-{client}-app.sh').write_text(data)
    repository = Path(registration['repository'])
    if repository_exists:
        repository.mkdir(parents=True)
        (repository / 'config').write_text('')
    return registration


def run(server: Path, *args: str, stdin: str = '', fail: str = 'never-matches', fail_message: str = 'failed',
        retry_lock: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f'{server / "bin"}:{os.environ["PATH"]}', FAKE_LOG=str(server / 'log'),
               FAKE_FAIL=fail, FAKE_FAIL_MESSAGE=fail_message, FAKE_RETRY_LOCK='1' if retry_lock else '',
               FAKE_OPENS=str(server / 'opens'),
               SELFHOST_BACKUP_SERVER_DATA=str(server / 'instances'),
               SELFHOST_BACKUP_SERVER_BORG_BASE=str(server / 'borg'))
    return subprocess.run(['bash', str(SCRIPT), *args], input=stdin, capture_output=True, text=True, env=env,
                          check=False)


def log(server: Path) -> list[str]:
    path = server / 'log'
    return path.read_text().splitlines() if path.exists() else []


def test_run_applies_retention_compact_and_check_with_the_server_s_credential(server):
    register(server, 'restic', 'db1', {'keep_last': 2})
    register(server, 'borg', 'db2', {'keep_daily': 7})
    (server / 'credentials' / 'restic-db1-app').write_text('server-key')
    (server / 'credentials' / 'borg-db2-app').write_text('borg-pass')
    result = run(server, 'run')
    assert result.returncode == 0, result.stderr
    calls = log(server)
    assert calls[0].startswith('borg --lock-wait 600 prune --glob-archives app@db2-') and '--keep-daily 7' in calls[0]
    assert calls[0].endswith(f'secret=borg-pass repo={server}/borgrepos/db2/app')
    assert calls[1].startswith('borg --lock-wait 600 compact secret=borg-pass')
    assert calls[2].startswith('borg --lock-wait 600 check secret=borg-pass')
    assert calls[3].startswith('restic --no-cache forget --tag selfhost-backup:app --host db1 ')
    assert calls[3].endswith(f'--keep-last 2 --prune secret=server-key repo={server}/restic/db1/app')
    assert calls[4] == f'restic --no-cache check secret=server-key repo={server}/restic/db1/app'
    assert 'every client instance is maintained' in result.stdout


@pytest.mark.parametrize('retry_lock', [True, False], ids=['restic-0.16-or-later', 'restic-0.14'])
def test_restic_waits_for_a_held_lock_where_it_knows_retry_lock(server, retry_lock):
    """A client's check or drill may still hold the lock when the maintenance starts: restic 0.16+ waits for it as
    long as borg (--lock-wait 600); Debian 12's restic 0.14 would refuse --retry-lock, so it gets no flag."""
    register(server, 'restic', 'db1', {'keep_last': 2})
    register(server, 'borg', 'db2', {'keep_daily': 7})
    (server / 'credentials' / 'restic-db1-app').write_text('k')
    (server / 'credentials' / 'borg-db2-app').write_text('p')
    result = run(server, 'run', retry_lock=retry_lock)
    assert result.returncode == 0, result.stderr
    calls = [call.split(' secret=')[0] for call in log(server)]
    wait = ' --retry-lock 10m' if retry_lock else ''
    assert [call for call in calls if call.startswith('restic')] == [
        f'restic --no-cache{wait} forget --tag selfhost-backup:app --host db1 --group-by host,tags --keep-last 2 --prune',
        f'restic --no-cache{wait} check']
    assert all(call.startswith('borg --lock-wait 600 ') for call in calls if call.startswith('borg'))
    assert not any('--help' in call for call in calls)


@pytest.mark.parametrize('step', ['forget', 'check'])
def test_a_lock_held_past_the_wait_fails_that_instance_and_the_run(server, step):
    """restic gives up after --retry-lock 10m: the instance fails with restic's message and names itself, the run
    exits non-zero, and the other instances are still maintained."""
    register(server, 'restic', 'db1', {'keep_last': 1})
    register(server, 'borg', 'db2', {})
    (server / 'credentials' / 'restic-db1-app').write_text('k')
    (server / 'credentials' / 'borg-db2-app').write_text('p')
    locked = 'Fatal: unable to create lock in backend: repository is already locked by PID 4242 on db1'
    result = run(server, 'run', retry_lock=True, fail=f'10m {step}', fail_message=locked)
    assert result.returncode == 1
    assert locked in result.stderr and result.stderr.splitlines()[-1].endswith('failed: restic-db1-app')
    assert 'every client instance is maintained' not in result.stdout
    calls = [call.split(' secret=')[0] for call in log(server)]
    assert calls[0] == 'borg --lock-wait 600 check'
    assert calls[-1].startswith(f'restic --no-cache --retry-lock 10m {step}')
    assert len(calls) == (2 if step == 'forget' else 3)  # a failed retention skips the check


def test_without_retention_only_the_check_runs_and_a_missing_repository_is_skipped(server):
    register(server, 'borg', 'db1', {})
    register(server, 'restic', 'db2', {}, repository_exists=False)
    (server / 'credentials' / 'borg-db1-app').write_text('p')
    result = run(server, 'run')
    assert result.returncode == 0, result.stderr
    assert [line.split(' secret=')[0] for line in log(server)] == ['borg --lock-wait 600 check']
    assert 'restic db2/app: no repository' in result.stdout


def test_one_failure_fails_the_run_but_the_others_still_run(server):
    register(server, 'restic', 'db1', {'keep_last': 1})
    register(server, 'restic', 'db2', {'keep_last': 1})
    for client in ('db1', 'db2'):
        (server / 'credentials' / f'restic-{client}-app').write_text('k')
    result = run(server, 'run', fail='--host db1')
    assert result.returncode == 1
    assert 'failed: restic-db1-app' in result.stderr
    calls = log(server)
    assert any('--host db2' in call for call in calls) and any(call.startswith('restic --no-cache check') and
                                                               call.endswith('/db2/app') for call in calls)
    assert not any(call.startswith('restic --no-cache check') and call.endswith('/db1/app') for call in calls)


def test_a_missing_credential_fails_that_instance(server):
    register(server, 'borg', 'db1', {})
    result = run(server, 'run')
    assert result.returncode == 1 and 'no credential' in result.stderr and log(server) == []


def test_the_secret_copies_are_removed(server, tmp_path):
    register(server, 'restic', 'db1', {})
    (server / 'credentials' / 'restic-db1-app').write_text('k')
    before = set(Path('/tmp').glob('tmp.*'))
    assert run(server, 'run').returncode == 0
    assert set(Path('/tmp').glob('tmp.*')) - before == set()


def test_add_restic_key_generates_the_server_key_and_adds_it_with_the_client_passphrase_once(server):
    registration = register(server, 'restic', 'db1', {})
    data = str(server / 'instances' / 'restic-db1-app.sh')
    result = run(server, 'add-restic-key', data, stdin='client-pass\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'added'
    key = (server / 'credentials' / 'restic-db1-app').read_text()
    assert len(key) >= 60 and 'client-pass' not in key
    assert oct((server / 'credentials' / 'restic-db1-app').stat().st_mode & 0o777) == '0o600'
    added = log(server)[-1]
    assert added.startswith('restic --no-cache key add --new-password-file ') and 'secret=client-pass' in added
    assert added.endswith(f'repo={registration["repository"]}')
    # Once the server's key opens the repository, nothing is added again.
    (server / 'opens').write_text(key)
    result = run(server, 'add-restic-key', data, stdin='client-pass\n')
    assert result.stdout.strip() == 'present' and 'key add' not in log(server)[-1]


def test_usage_errors(server):
    assert run(server).returncode == 1
    assert run(server, 'add-restic-key').returncode == 1
    assert run(server, 'add-restic-key', str(server / 'nothing.sh')).returncode == 1


def test_prune_clients_removes_every_other_client_s_access_and_keeps_the_repositories(server):
    register(server, 'restic', 'db1', {})
    register(server, 'borg', 'gone', {})
    (server / 'credentials' / 'restic-db1-app').write_text('k1')
    (server / 'credentials' / 'borg-gone-app').write_text('k2')
    htpasswd = server / 'users.htpasswd'
    htpasswd.write_text('db1:$2y$05$aaa\ngone:$2y$05$bbb\n')
    htpasswd.chmod(0o640)
    keys = server / 'authorized_keys'
    keys.write_text('command="borg serve --append-only --restrict-to-repository /srv/borg/gone/app",restrict '
                    'ssh-ed25519 AAAA borg-backup-app@gone\n'
                    'command="borg serve --append-only --restrict-to-repository /srv/borg/db1/x",restrict '
                    'ssh-ed25519 BBBB borg-backup-x@db1\n'
                    'ssh-ed25519 CCCC admin@laptop\n')
    result = run(server, 'prune-clients', str(htpasswd), str(keys), 'db1', 'other')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['removed htpasswd user gone', 'removed borg key borg-backup-app@gone',
                                          'removed maintenance of borg-gone-app',
                                          f'not ours: {keys} line 3, kept (review it): ssh-ed25519 CCCC admin@laptop']
    assert htpasswd.read_text() == 'db1:$2y$05$aaa\n' and oct(htpasswd.stat().st_mode & 0o777) == '0o640'
    assert keys.read_text().splitlines() == [
        'command="borg serve --append-only --restrict-to-repository /srv/borg/db1/x",restrict '
        'ssh-ed25519 BBBB borg-backup-x@db1', 'ssh-ed25519 CCCC admin@laptop']  # a line not ours stays
    assert sorted(path.name for path in (server / 'instances').iterdir()) == ['restic-db1-app.sh']
    assert sorted(path.name for path in (server / 'credentials').iterdir()) == ['restic-db1-app']
    assert (server / 'borgrepos' / 'gone' / 'app' / 'config').exists()  # the repository stays
    # Nothing left to remove: unchanged, and the files are not rewritten.
    again = run(server, 'prune-clients', str(htpasswd), str(keys), 'db1', 'other')
    assert again.stdout.splitlines()[0] == 'unchanged'


def test_prune_clients_treats_only_the_borg_roles_own_lines_as_clients_and_names_every_other_line(server):
    """A line is a client's only as the borg role writes it (the forced append-only command restricted to one
    repository, restrict, one ed25519 key, <job>@<client>). Any other line stays but is named: one a client planted
    through an older release (an unrestricted key, or options of its own) as well as the admin's."""
    htpasswd = server / 'users.htpasswd'
    htpasswd.write_text('db1:$2y$05$aaa\n')
    ours = ('command="borg serve --append-only --restrict-to-repository /srv/borg/db1/app",restrict '
            'ssh-ed25519 AAAAC3Nz+/9= borg-backup-app@db1')
    planted = [
        'ssh-ed25519 EVIL borg-backup-app@db1',  # unrestricted, with a listed client's comment
        'command="borg serve --restrict-to-repository /srv/borg/gone/app",restrict ssh-ed25519 NOAPPEND x@gone',
        'command="borg serve --append-only --restrict-to-repository /srv/borg/gone/app" ssh-ed25519 NORESTRICT x@gone',
        'command="borg serve --append-only --restrict-to-repository /srv/borg/gone/app",restrict ssh-rsa RSA x@gone',
        'no-pty ' + ours.replace('db1', 'gone'),
    ]
    gone = ours.replace('db1', 'gone')
    long_line = 'ssh-ed25519 ' + 'A' * 300 + ' admin@laptop'
    keys = server / 'authorized_keys'
    keys.write_text('\n'.join(['# the admin\'s', ours, gone] + planted + [long_line]) + '\n')
    result = run(server, 'prune-clients', str(htpasswd), str(keys), 'db1')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'removed borg key borg-backup-app@gone'
    assert lines[1:] == [f'not ours: {keys} line {number}, kept (review it): {line}'
                         for number, line in enumerate(planted, start=4)] + [
        f'not ours: {keys} line 9, kept (review it): {long_line[:120]}...{long_line[-60:]}']
    assert keys.read_text().splitlines() == ['# the admin\'s', ours] + planted + [long_line]
    # Kept lines are named at every run, but only a removal is a change (the role's changed_when).
    again = run(server, 'prune-clients', str(htpasswd), str(keys), 'db1')
    assert again.stdout.splitlines()[0] == 'unchanged' and len(again.stdout.splitlines()) == 1 + len(planted) + 1


def test_prune_clients_needs_at_least_one_client(server):
    result = run(server, 'prune-clients', str(server / 'h'), str(server / 'k'))
    assert result.returncode == 1 and 'usage' in result.stderr
