# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Initialise restic repositories that do not exist yet (selfhost.backup.restic_repository).

The module passes itself in: ``run_command`` runs restic, ``no_log_values`` masks the secrets read here in any
output, ``check_mode`` and ``params`` (``restic``, ``timeout``) are shared by every repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import pwd
import stat
import tempfile
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _restic


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read().rstrip('\n')
    except OSError as exc:
        raise _restic.ResticError(f'cannot read {what} from {path}: {exc.strerror}') from exc


def local_path(repository: str) -> str | None:
    """The directory of a local repository (a plain absolute path or ``local:<absolute path>``), else None."""
    path = repository[len('local:'):] if repository.startswith('local:') else repository
    return path if path.startswith('/') else None


def fingerprint(location: str, password: str, config: bytes, uid: int) -> str:
    """That this passphrase opened the repository at ``location`` whose config file is ``config``, as the user
    ``uid``. A changed passphrase or user, or another repository under the same path (another config), no
    longer matches."""
    digest = hashlib.sha256()
    for part in (location.encode(), password.encode(), config, str(uid).encode()):
        digest.update(len(part).to_bytes(8, 'big'))
        digest.update(part)
    return digest.hexdigest()


class Opened:
    """The local repositories a converge has opened, by fingerprint, in a root-only file: a re-run trusts
    them without restic, whose key derivation costs about half a second per repository. The file holds no
    more than the secrets directory next to it already does (a hash of a passphrase stored there in full)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.changed = False
        try:
            with open(path, encoding='utf-8') as handle:
                loaded = json.load(handle)
        except (OSError, ValueError):
            loaded = {}
        self.entries: dict[str, str] = loaded if isinstance(loaded, dict) else {}

    def knows(self, location: str, print_: str) -> bool:
        return self.entries.get(location) == print_

    def add(self, location: str, print_: str) -> None:
        if self.entries.get(location) != print_:
            self.entries[location] = print_
            self.changed = True

    def save(self, module: t.Any) -> None:
        if not self.changed or module.check_mode:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.restic-repositories.')
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(self.entries, handle, indent=1, sort_keys=True)
        os.chmod(tmp, 0o600)
        if not os.path.exists(self.path):
            # atomic_move gives a new file the umask's mode but keeps an existing one's: never readable by others.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        module.atomic_move(tmp, self.path)


def secret_files_missing(spec: t.Mapping[str, t.Any]) -> bool:
    return not all(os.path.exists(path) for path in [spec['password_file']] + list(spec['environment_files'].values()))


class Repository:
    """One repository: ``spec`` holds ``user``, ``password_file``, ``environment_files`` and ``repository``."""

    def __init__(self, module: t.Any, spec: t.Mapping[str, t.Any]) -> None:
        self.module = module
        self.password = _read(spec['password_file'], 'the passphrase')
        self.environ = {name: _read(path, name) for name, path in sorted(spec['environment_files'].items())}
        if spec.get('repository'):
            self.environ['RESTIC_REPOSITORY'] = spec['repository']
        if 'RESTIC_REPOSITORY' not in self.environ:
            raise _restic.ResticError('give repository or environment_files.RESTIC_REPOSITORY')
        # Whatever restic prints (a URL with credentials in an error), Ansible masks these values in the result.
        module.no_log_values.update(value for value in [self.password] + list(self.environ.values()) if value)
        self.location = self.environ['RESTIC_REPOSITORY']
        self.environ.update({'LC_ALL': 'C', 'RESTIC_PASSWORD_FILE': '', 'RESTIC_PASSWORD_COMMAND': ''})
        try:
            entry = pwd.getpwnam(spec['user'])
        except KeyError as exc:
            raise _restic.ResticError(f'the user {spec["user"]!r} does not exist') from exc
        self.uid = entry.pw_uid
        self.prefix = self._as_user(entry)

    @staticmethod
    def _as_user(entry: pwd.struct_passwd) -> list[str]:
        if entry.pw_uid == os.geteuid():
            return []
        return ['setpriv', f'--reuid={entry.pw_uid}', f'--regid={entry.pw_gid}', '--init-groups', '--']

    def run(self, args: list[str]) -> tuple[int, str, str]:
        # The passphrase goes to stdin: restic reads it from there when stdin is not a terminal.
        argv = ['timeout', str(self.module.params['timeout'])] + self.prefix
        argv += [self.module.params['restic'], '--no-cache', '--quiet'] + args
        return self.module.run_command(argv, data=self.password, environ_update=self.environ, cwd='/')

    def local_fingerprint(self) -> str | None:
        """The fingerprint of a local repository with its config file, else None (remote, or not created)."""
        path = local_path(self.location)
        if path is None:
            return None
        # Root reads a file in a directory the user owns: no symlink, no FIFO that would block the converge.
        try:
            fd = os.open(posixpath.join(path, 'config'), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with os.fdopen(fd, 'rb') as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            return fingerprint(self.location, self.password, handle.read(), self.uid)

    def ensure(self, opened: Opened) -> dict[str, t.Any]:
        known = self.local_fingerprint()
        if known is not None and opened.knows(self.location, known):
            return {'changed': False, 'initialized': False}
        rc, dummy, err = self.run(_restic.probe_args())
        if _restic.probe_state(rc, err) == 'present':
            self._remember(opened)
            return {'changed': False, 'initialized': False}
        if not self.module.check_mode:
            rc, out, err = self.run(_restic.init_args())
            if rc != 0:
                raise _restic.ResticError(f'restic init failed (rc={rc}): {(err or out).strip()}')
            self._remember(opened)
        return {'changed': True, 'initialized': True}

    def _remember(self, opened: Opened) -> None:
        known = self.local_fingerprint()
        if known is not None:
            opened.add(self.location, known)


def ensure(module: t.Any, spec: t.Mapping[str, t.Any], opened: Opened) -> dict[str, t.Any]:
    """One repository, present afterwards (or, in check mode, reported as would be initialised)."""
    if module.check_mode and secret_files_missing(spec):
        # A first run in check mode: the role has not written the secrets yet, so the repository would be set up.
        return {'changed': True, 'initialized': True}
    return Repository(module, spec).ensure(opened)


def ensure_all(module: t.Any, specs: t.Sequence[t.Mapping[str, t.Any]],
               opened: Opened) -> tuple[list[dict[str, t.Any]], bool]:
    """Every repository in order, each result named by its password file (a path, no secret).

    Returns the results and whether anything changed; a ResticError names the failing repository and carries
    whether an earlier one was already initialised (``changed``).
    """
    results: list[dict[str, t.Any]] = []
    for spec in specs:
        try:
            outcome = ensure(module, spec, opened)
        except _restic.ResticError as exc:
            raise RepositoriesError(f'repository of {spec["password_file"]}: {exc}',
                                    any(item['changed'] for item in results)) from exc
        results.append({'password_file': spec['password_file'], 'user': spec['user']} | outcome)
    return results, any(item['changed'] for item in results)


class RepositoriesError(Exception):
    def __init__(self, msg: str, changed: bool) -> None:
        super().__init__(msg)
        self.changed = changed
