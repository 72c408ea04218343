# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Initialise restic repositories that do not exist yet (selfhost.backup.restic_repository).

The module passes itself in: ``run_command`` runs restic, ``no_log_values`` masks the secrets read here in any
output, ``check_mode`` and ``params`` (``restic``, ``timeout``) are shared by every repository.
"""

from __future__ import annotations

import os
import posixpath
import pwd
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
        self.prefix = self._as_user(spec['user'])

    @staticmethod
    def _as_user(user: str) -> list[str]:
        try:
            entry = pwd.getpwnam(user)
        except KeyError as exc:
            raise _restic.ResticError(f'the user {user!r} does not exist') from exc
        if entry.pw_uid == os.geteuid():
            return []
        return ['setpriv', f'--reuid={entry.pw_uid}', f'--regid={entry.pw_gid}', '--init-groups', '--']

    def run(self, args: list[str]) -> tuple[int, str, str]:
        # The passphrase goes to stdin: restic reads it from there when stdin is not a terminal.
        argv = ['timeout', str(self.module.params['timeout'])] + self.prefix
        argv += [self.module.params['restic'], '--no-cache', '--quiet'] + args
        return self.module.run_command(argv, data=self.password, environ_update=self.environ, cwd='/')

    def exists_locally(self) -> bool:
        """A local repository with its config file exists; no restic call, whose key derivation costs about
        half a second per repository. A wrong passphrase then shows at the first backup, not here."""
        path = local_path(self.location)
        return path is not None and os.path.isfile(posixpath.join(path, 'config'))

    def ensure(self) -> dict[str, t.Any]:
        if self.exists_locally():
            return {'changed': False, 'initialized': False}
        rc, dummy, err = self.run(_restic.probe_args())
        if _restic.probe_state(rc, err) == 'present':
            return {'changed': False, 'initialized': False}
        if not self.module.check_mode:
            rc, out, err = self.run(_restic.init_args())
            if rc != 0:
                raise _restic.ResticError(f'restic init failed (rc={rc}): {(err or out).strip()}')
        return {'changed': True, 'initialized': True}


def ensure(module: t.Any, spec: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """One repository, present afterwards (or, in check mode, reported as would be initialised)."""
    if module.check_mode and secret_files_missing(spec):
        # A first run in check mode: the role has not written the secrets yet, so the repository would be set up.
        return {'changed': True, 'initialized': True}
    return Repository(module, spec).ensure()


def ensure_all(module: t.Any, specs: t.Sequence[t.Mapping[str, t.Any]]) -> tuple[list[dict[str, t.Any]], bool]:
    """Every repository in order, each result named by its password file (a path, no secret).

    Returns the results and whether anything changed; a ResticError names the failing repository and carries
    whether an earlier one was already initialised (``changed``).
    """
    results: list[dict[str, t.Any]] = []
    for spec in specs:
        try:
            outcome = ensure(module, spec)
        except _restic.ResticError as exc:
            raise RepositoriesError(f'repository of {spec["password_file"]}: {exc}',
                                    any(item['changed'] for item in results)) from exc
        results.append({'password_file': spec['password_file'], 'user': spec['user']} | outcome)
    return results, any(item['changed'] for item in results)


class RepositoriesError(Exception):
    def __init__(self, msg: str, changed: bool) -> None:
        super().__init__(msg)
        self.changed = changed
