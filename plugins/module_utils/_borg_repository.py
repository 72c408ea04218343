# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Check borg repositories before the role replaces anything (selfhost.backup.borg_repository).

The borg jobs initialise their repository at the first backup and then record it in a marker file in their
BORG_BASE_DIR (see ``provider_init`` in roles/borg/files/borg.sh). At converge time, before any secret, unit or
script is written:

- a repository that exists must open with the passphrase about to be installed (``borg list`` with the
  passphrase on a file descriptor, never in argv, the environment or a file of its own): a wrong one fails the
  converge and the working one stays;
- a repository the job has initialised before (the marker names it) that is missing now fails the converge,
  unless the instance is to be reinitialised: then the marker goes, and the next backup initialises a new one.

A local repository exists when its ``config`` file does (read as root, never following a link); a remote one
is asked over SSH with the job's key once the job has initialised it (before, the server may not know the
key). A local repository opened before with this passphrase is trusted without borg (a fingerprint in a
root-only state file, as for restic). The module passes itself in: ``run_command`` runs borg,
``no_log_values`` masks the passphrases, ``check_mode`` and ``params`` (``borg``, ``timeout``).
"""

from __future__ import annotations

import os
import posixpath
import pwd
import shutil
import stat
import tempfile
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _borg_ssh, _concurrent
from ansible_collections.selfhost.backup.plugins.module_utils._restic_repository import Opened, fingerprint

WRONG_PASSPHRASE = 'is incorrect'  # "passphrase supplied in BORG_PASSPHRASE, ... is incorrect." (1.2, 1.4)
MISSING = ('does not exist', 'is not a valid repository')


class BorgRepositoryError(Exception):
    """One repository fails the check; the message names no secret."""


def _read_regular(path: str, follow: bool = False) -> bytes | None:
    """The content of a regular file, as root in a directory a user owns: no link (unless ``follow``, for a file
    the administrator named, which may link into /run/secrets as the units' LoadCredential= allows), no FIFO;
    None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read()


def is_remote(repository: str) -> bool:
    return repository.startswith('ssh://')


def classify(rc: int, stderr: str) -> str:
    """``present``, ``absent`` or ``wrong_passphrase`` from ``borg list``; anything else is an error."""
    if rc == 0:
        return 'present'
    text = stderr or ''
    if WRONG_PASSPHRASE in text and 'passphrase' in text:
        return 'wrong_passphrase'
    if any(missing in text for missing in MISSING):
        return 'absent'
    raise BorgRepositoryError(f'borg cannot open the repository (rc={rc}): {text.strip()}')


def probe_args() -> list[str]:
    """Opens the manifest, so the key and the passphrase, without a lock, a cache or any write."""
    return ['--bypass-lock', 'list', '--short', '--last', '1']


class Repository:
    """One instance's repository: ``spec`` holds ``name``, ``user``, ``repository``, ``marker``, ``password_file``
    or ``passphrase``, and for a remote one ``ssh_key`` and ``known_hosts``; ``reinitialise``."""

    def __init__(self, module: t.Any, spec: t.Mapping[str, t.Any]) -> None:
        self.module = module
        self.name = spec['name']
        self.repository = spec['repository']
        self.marker = spec['marker']
        self.reinitialise = bool(spec.get('reinitialise'))
        self.ssh_key = spec.get('ssh_key')
        self.known_hosts = spec.get('known_hosts') or ''
        self.passphrase = spec.get('passphrase')
        self.password_file = spec.get('password_file')
        if self.passphrase:
            module.no_log_values.add(self.passphrase)
        try:
            self.user = pwd.getpwnam(spec['user'])
        except KeyError as exc:
            raise BorgRepositoryError(f'the user {spec["user"]!r} does not exist') from exc

    @property
    def password(self) -> str:
        """The passphrase to check, as borg reads it (without the final newline): given, or read as root from the
        passphrase file (only when it is needed: a repository not created yet needs none)."""
        if self.passphrase is not None:
            return str(self.passphrase).rstrip('\n')
        content = _read_regular(self.password_file, follow=True) if self.password_file else None
        if content is None:
            raise BorgRepositoryError(f'cannot read the passphrase from {self.password_file}')
        password = content.decode('utf-8', 'replace').rstrip('\n')
        if password:
            self.module.no_log_values.add(password)
        return password

    @property
    def initialised_before(self) -> bool:
        """Whether the job recorded this repository as initialised (see provider_init in borg.sh)."""
        content = _read_regular(self.marker)
        return content is not None and content.decode('utf-8', 'replace').rstrip('\n') == self.repository

    def _as_user(self) -> list[str]:
        if self.user.pw_uid == os.geteuid():
            return []
        return ['setpriv', f'--reuid={self.user.pw_uid}', f'--regid={self.user.pw_gid}', '--init-groups', '--']

    def run(self, password: str) -> tuple[int, str, str]:
        """``borg list`` as the user, in a private directory the user owns (BORG_BASE_DIR, and for SSH a copy of
        the job's key and the new pinned host keys), removed afterwards. The passphrase goes to stdin
        (BORG_PASSPHRASE_FD=0)."""
        directory = tempfile.mkdtemp(prefix='selfhost-backup-borg-check.')
        try:
            base = posixpath.join(directory, 'base')
            os.mkdir(base, 0o700)
            environ = {'BORG_REPO': self.repository, 'BORG_BASE_DIR': base, 'BORG_PASSPHRASE_FD': '0',
                       'BORG_EXIT_CODES': 'legacy', 'LC_ALL': 'C',
                       # A new base directory knows no repository; an authenticated-only one would be asked about.
                       'BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK': 'yes'}
            if is_remote(self.repository):
                shutil.copyfile(t.cast(str, self.ssh_key), posixpath.join(directory, 'ssh_key'))
                with open(posixpath.join(directory, 'known_hosts'), 'w', encoding='utf-8') as handle:
                    handle.write(self.known_hosts)
                environ['BORG_RSH'] = _borg_ssh.rsh(directory)
            for root, dirs, files in os.walk(directory):
                for entry in [root] + [posixpath.join(root, name) for name in dirs + files]:
                    os.chmod(entry, 0o700 if os.path.isdir(entry) else 0o600)
                    os.chown(entry, self.user.pw_uid, self.user.pw_gid)
            argv = ['timeout', str(self.module.params['timeout'])] + self._as_user()
            # Only the descriptor counts: a passphrase in the module's own environment must not win.
            argv += ['env', '-u', 'BORG_PASSPHRASE', '-u', 'BORG_PASSCOMMAND', self.module.params['borg']] + probe_args()
            return self.module.run_command(argv, data=password, environ_update=environ, cwd='/')
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def vanished(self) -> str:
        where = ('on its server' if is_remote(self.repository) else f'{self.repository}')
        hint = ('If the server lost it, restore it there or' if is_remote(self.repository)
                else 'If its volume is not mounted, mount it and run again, or')
        return (f'the repository {where} was initialised by this instance\'s job before ({self.marker}) and is '
                'missing now: its archives are gone or out of reach, and nothing will be initialised in its '
                f'place. {hint} to start a new, empty repository there on purpose, run once with '
                f'borg_reinitialise_repositories: [{self.name}] (the next backup initialises it).')

    def _forget_marker(self) -> dict[str, t.Any]:
        """The reinitialise escape hatch: without the marker the next backup initialises a new repository."""
        if not self.module.check_mode:
            try:
                os.unlink(self.marker)
            except FileNotFoundError:
                pass
        return {'changed': True, 'state': 'absent'}

    def check(self, opened: Opened) -> dict[str, t.Any]:
        initialised = self.initialised_before
        if is_remote(self.repository):
            if not initialised or not self.ssh_key or not os.path.exists(self.ssh_key):
                # Not initialised by this job yet (the server may not know its key): the first backup does it.
                return {'changed': False, 'state': 'unchecked'}
            config = b''
        else:
            config_file = _read_regular(posixpath.join(self.repository, 'config'))
            if config_file is None:
                if not initialised:
                    return {'changed': False, 'state': 'absent'}
                if self.reinitialise:
                    return self._forget_marker()
                raise BorgRepositoryError(self.vanished())
            config = config_file
        password = self.password
        if not is_remote(self.repository):
            if opened.knows(self.repository, fingerprint(self.repository, password, config, self.user.pw_uid)):
                return {'changed': False, 'state': 'present'}
        rc, dummy, err = self.run(password)
        state = classify(rc, err)
        if state == 'wrong_passphrase':
            raise BorgRepositoryError('the passphrase does not open the existing repository (borg: passphrase '
                                      'incorrect)')
        if state == 'absent':
            if not initialised:
                return {'changed': False, 'state': 'absent'}
            if self.reinitialise:
                return self._forget_marker()
            raise BorgRepositoryError(self.vanished())
        if not is_remote(self.repository):
            opened.add(self.repository, fingerprint(self.repository, password, config, self.user.pw_uid))
        return {'changed': False, 'state': 'present'}


def check_all(module: t.Any, specs: t.Sequence[t.Mapping[str, t.Any]],
              opened: Opened) -> tuple[list[dict[str, t.Any]], bool, list[str]]:
    """Every repository, concurrently (at most ``jobs`` at a time, the host's cores by default; those at the same
    location one after the other): the results in the order given, whether a marker was (or would be) removed,
    and one message per failing repository naming its instance (``borg_instances.<name>: ...``), never a secret."""
    def check(spec: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        if module.check_mode and (not os.path.exists(module.params['borg']) or (
                spec.get('passphrase') is None and not os.path.exists(spec.get('password_file') or ''))):
            # A first run in check mode: borg (or the passphrase file) is not on the host yet.
            return {'changed': False, 'state': 'unknown'}
        if module.check_mode and spec['name'] in (module.params.get('pending_authorization') or []):
            # Check mode did not authorize the job's key on its server (a client listed again): not asked.
            return {'changed': False, 'state': 'unknown'}
        return Repository(module, spec).check(opened)

    results: list[dict[str, t.Any]] = []
    errors: list[str] = []
    outcomes = _concurrent.run_grouped(check, specs, lambda spec: spec['repository'], module.params.get('jobs'))
    for spec, (outcome, exc) in zip(specs, outcomes):
        if exc is not None:
            if not isinstance(exc, (BorgRepositoryError, OSError)):
                raise exc
            errors.append(f'borg_instances.{spec["name"]}: {exc}')
            continue
        results.append({'name': spec['name']} | t.cast(dict, outcome))
    return results, any(item['changed'] for item in results), errors
