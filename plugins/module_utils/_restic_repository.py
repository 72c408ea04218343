# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Check restic repositories, and initialise those that do not exist yet (selfhost.backup.restic_repository).

The module passes itself in: ``run_command`` runs restic, ``no_log_values`` masks the secrets read here in any
output, ``check_mode`` and ``params`` (``restic``, ``timeout``, ``init``) are shared by every repository.

Two guards, both before anything is written when the role runs the module with ``init: false`` ahead of the
secrets: a repository that exists must open with the passphrase given (a wrong one never replaces the working
one on the host), and a repository this host has seen before (recorded in the state file) that is now missing
is never initialised again in its place unless ``reinitialise`` says so: a wiped or unmounted volume fails the
converge instead of silently starting an empty history.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import pwd
import re
import stat
import threading
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _concurrent, _io, _restic


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


def _strip_userinfo(location: str) -> str:
    """``rest:https://user:secret@host/`` -> ``rest:https://host/``: rotated credentials stay the same location."""
    return re.sub(r'^([a-z0-9]+:[a-z]+://)[^/@]*@', r'\1', location)


def location_key(location: str) -> str:
    """The state file's key of a repository: a local path as it is, a remote location as a hash without its
    credentials (the URL of a REST server may hold a password)."""
    if local_path(location) is not None:
        return location
    return 'remote:' + hashlib.sha256(_strip_userinfo(location).encode()).hexdigest()


def fingerprint(location: str, password: str, config: bytes, uid: int) -> str:
    """That this passphrase opened the repository at ``location`` whose config file is ``config``, as the user
    ``uid``. A changed passphrase or user, or another repository under the same path (another config), no
    longer matches."""
    digest = hashlib.sha256()
    for part in (location.encode(), password.encode(), config, str(uid).encode()):
        digest.update(len(part).to_bytes(8, 'big'))
        digest.update(part)
    return digest.hexdigest()


SEEN = 'seen'


class Opened:
    """The local repositories a converge has opened, by fingerprint, in a root-only file: a re-run trusts
    them without restic, whose key derivation costs about half a second per repository. The file holds no
    more than the secrets directory next to it already does (a hash of a passphrase stored there in full).

    Every key is also a repository this host has seen: a local path (with the fingerprint), or a remote
    location's ``location_key`` (with ``seen``). A seen repository that is missing is never created again
    silently."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.changed = False
        self.lock = threading.Lock()  # repositories are checked concurrently
        try:
            with open(path, encoding='utf-8') as handle:
                loaded = json.load(handle)
        except (OSError, ValueError):
            loaded = {}
        self.entries: dict[str, str] = loaded if isinstance(loaded, dict) else {}

    def knows(self, location: str, print_: str) -> bool:
        return self.entries.get(location) == print_

    def add(self, location: str, print_: str) -> None:
        with self.lock:
            if self.entries.get(location) != print_:
                self.entries[location] = print_
                self.changed = True

    def seen(self, location: str) -> bool:
        return location_key(location) in self.entries

    def add_seen(self, location: str) -> None:
        with self.lock:
            if not self.seen(location):
                self.entries[location_key(location)] = SEEN
                self.changed = True

    def save(self, module: t.Any) -> None:
        if not self.changed or module.check_mode:
            return
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        data = json.dumps(self.entries, indent=1, sort_keys=True).encode('utf-8')
        _io.write_atomic(module, self.path, data, 0o600)


def secret_files_missing(spec: t.Mapping[str, t.Any]) -> bool:
    """Whether a file this repository's secrets are read from does not exist (values given directly are none)."""
    paths = [] if spec.get('passphrase') is not None else [spec['password_file']]
    if spec.get('environment') is None:
        paths += list(spec['environment_files'].values())
    return not all(os.path.exists(path) for path in paths)


def _value(value: t.Any) -> str:
    """A secret given directly, as _read would have read it from its file."""
    return str(value).rstrip('\n')


class Repository:
    """One repository: ``spec`` holds ``user``, ``password_file``, ``environment_files`` and ``repository``, and
    optionally ``name``, ``reinitialise`` and the secrets themselves (``passphrase``, ``environment``), which
    then take the place of the files: the values about to be written, checked before they are."""

    def __init__(self, module: t.Any, spec: t.Mapping[str, t.Any]) -> None:
        self.module = module
        self.name = spec.get('name') or ''
        self.reinitialise = bool(spec.get('reinitialise'))
        self.cacert = spec.get('cacert')
        if spec.get('passphrase') is not None:
            self.password = _value(spec['passphrase'])
        else:
            self.password = _read(spec['password_file'], 'the passphrase')
        if spec.get('environment') is not None:
            self.environ = {name: _value(value) for name, value in sorted(spec['environment'].items())}
        else:
            self.environ = {name: _read(path, name) for name, path in sorted(spec['environment_files'].items())}
        if spec.get('repository'):
            self.environ['RESTIC_REPOSITORY'] = spec['repository']
        if 'RESTIC_REPOSITORY' not in self.environ:
            raise _restic.ResticError('give repository or environment_files.RESTIC_REPOSITORY')
        self.location = self.environ['RESTIC_REPOSITORY']
        # Whatever restic prints (a URL with credentials in an error), Ansible masks these values in the result;
        # a local path is no secret, and the messages name it.
        module.no_log_values.update(value for name, value in [('', self.password)] + list(self.environ.items())
                                    if value and not (name == 'RESTIC_REPOSITORY' and local_path(value) is not None))
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
        argv += [self.module.params['restic'], '--no-cache', '--quiet'] + _restic.cacert_args(self.cacert) + args
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

    def probe(self) -> str:
        """``present`` or ``absent``; a repository that exists but does not open is an error."""
        rc, dummy, err = self.run(_restic.probe_args())
        try:
            return _restic.probe_state(rc, err, self.module.params['timeout'])
        except _restic.ResticError as exc:
            # restic >= 0.17 exits 12 for a wrong password; every version says so.
            if rc == 12 or 'wrong password' in (err or ''):
                raise _restic.ResticError('the passphrase does not open the existing repository '
                                          f'(restic: {(err or "").strip()})') from exc
            raise

    def vanished(self) -> str:
        path = local_path(self.location)
        where = f'the repository {path}' if path is not None else 'the remote repository'
        hint = ('If its volume is not mounted, mount it and run again.' if path is not None
                else 'If the server lost it or refuses the credentials now, fix that and run again.')
        name = self.name or '<instance>'
        return (f'{where} was opened on this host before and is missing now (restic finds no repository there): '
                f'its snapshots are gone or out of reach, and nothing was initialised in its place. {hint} '
                'To start a new, empty repository there on purpose, run once with '
                f'restic_reinitialise_repositories: [{name}].')

    def ensure(self, opened: Opened, init: bool = True) -> dict[str, t.Any]:
        known = self.local_fingerprint()
        if known is not None and opened.knows(self.location, known):
            return {'changed': False, 'initialized': False, 'state': 'present'}
        if self.probe() == 'present':
            self._remember(opened)
            return {'changed': False, 'initialized': False, 'state': 'present'}
        if opened.seen(self.location) and not self.reinitialise:
            raise _restic.ResticError(self.vanished())
        if not init:
            return {'changed': False, 'initialized': False, 'state': 'absent'}
        if not self.module.check_mode:
            rc, out, err = self.run(_restic.init_args())
            if rc != 0:
                raise _restic.ResticError(f'restic init failed (rc={rc}): {(err or out).strip()}')
            self._remember(opened)
        return {'changed': True, 'initialized': True, 'state': 'absent'}

    def _remember(self, opened: Opened) -> None:
        if local_path(self.location) is None:
            opened.add_seen(self.location)
            return
        known = self.local_fingerprint()
        if known is not None:
            opened.add(self.location, known)


def ensure(module: t.Any, spec: t.Mapping[str, t.Any], opened: Opened) -> dict[str, t.Any]:
    """One repository, present afterwards (or, in check mode, reported as would be initialised).

    With ``init`` false (module option) nothing is initialised: the repository is only checked, and its
    ``state`` (``present``, ``absent``, ``unknown``) returned. In check mode a repository whose instance is in
    ``pending_authorization`` (module option) is not asked: ``unknown``, no change.
    """
    init = module.params.get('init', True)
    if module.check_mode and (secret_files_missing(spec) or not os.path.exists(module.params['restic'])):
        # A first run in check mode: the role has not written the secrets (or installed restic) yet, so the
        # repository would be set up.
        return {'changed': init, 'initialized': init, 'state': 'unknown'}
    if module.check_mode and spec.get('name') and spec['name'] in (module.params.get('pending_authorization') or []):
        # Check mode did not register this host on the repository's backup server (a client listed again, or new
        # to a server that runs already): the server would refuse the password, so it is not asked.
        return {'changed': False, 'initialized': False, 'state': 'unknown'}
    return Repository(module, spec).ensure(opened, init)


def label(spec: t.Mapping[str, t.Any]) -> str:
    """What names a repository in a message: its instance, else its password file (a path, no secret)."""
    return f'restic_instances.{spec["name"]}' if spec.get('name') else f'repository of {spec["password_file"]}'


def location_of(spec: t.Mapping[str, t.Any]) -> str:
    """Where a repository is, as far as it can be told before its secrets are read: repositories two instances
    share are handled one after the other. A file that cannot be read stands for itself (Repository says why)."""
    location = spec.get('repository') or (spec.get('environment') or {}).get('RESTIC_REPOSITORY')
    if not location and spec.get('environment_files', {}).get('RESTIC_REPOSITORY'):
        path = spec['environment_files']['RESTIC_REPOSITORY']
        try:
            location = _read(path, 'RESTIC_REPOSITORY')
        except _restic.ResticError:
            location = f'file:{path}'
    location = str(location or '')
    path = local_path(location)
    return posixpath.normpath(path) if path is not None else _strip_userinfo(location)


def ensure_all(module: t.Any, specs: t.Sequence[t.Mapping[str, t.Any]],
               opened: Opened) -> tuple[list[dict[str, t.Any]], bool]:
    """Every repository, each result named by its instance and password file (no secret), in the order given.

    The repositories are probed and initialised concurrently, at most ``jobs`` (module option; the host's cores
    by default) at a time: a first converge pays one ``restic init`` (a key derivation) per new repository, and
    they no longer queue. Repositories at the same location are handled one after the other.

    Returns the results and whether anything changed. Every repository is handled; a RepositoriesError names
    each failing one and carries whether any other was initialised (``changed``).
    """
    results: list[dict[str, t.Any]] = []
    errors: list[str] = []
    outcomes = _concurrent.run_grouped(lambda spec: ensure(module, spec, opened), specs, location_of,
                                       module.params.get('jobs'))
    for spec, (outcome, exc) in zip(specs, outcomes):
        if exc is not None:
            if not isinstance(exc, _restic.ResticError):
                raise exc
            errors.append(f'{label(spec)}: {exc}')
            continue
        results.append({'name': spec.get('name') or '', 'password_file': spec['password_file'],
                        'user': spec['user']} | t.cast(dict, outcome))
    changed = any(item['changed'] for item in results)
    if errors:
        raise RepositoriesError('\n'.join(errors), changed)
    return results, changed


class RepositoriesError(Exception):
    def __init__(self, msg: str, changed: bool) -> None:
        super().__init__(msg)
        self.changed = changed
