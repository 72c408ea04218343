# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The paths of the provider jobs on the host in one pass: directories, root-only secret files, pruning.

Used by selfhost.backup.job_paths. Every decision is made first (``plan``), then applied (``apply``), so check
mode and diff mode see exactly what a real run would do. Secret content never leaves this module: neither the
diff nor any error message holds it.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import posixpath
import pwd
import shutil
import stat
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _io
from ansible_collections.selfhost.backup.plugins.module_utils._layout import SYSTEM_DIRECTORIES


class JobPathsError(Exception):
    """A path cannot be managed (an unknown user, a file where a directory should be); nothing more was done."""


Mover = _io.Mover


@dataclasses.dataclass(frozen=True)
class Attributes:
    """Wanted owner, group and mode; None leaves that attribute as it is."""

    uid: int | None = None
    gid: int | None = None
    mode: int | None = None

    @property
    def empty(self) -> bool:
        return self.uid is None and self.gid is None and self.mode is None


@dataclasses.dataclass(frozen=True)
class Directory:
    path: str
    attributes: Attributes


@dataclasses.dataclass(frozen=True)
class SecretFile:
    path: str
    content: str
    attributes: Attributes


@dataclasses.dataclass
class PathChanges:
    """What to do, in order: directories to create or fix, secret files to write, files to remove, directories to
    remove with everything in them."""

    directories: list[tuple[Directory, os.stat_result | None]]
    secrets: list[tuple[SecretFile, os.stat_result | None, bool]]
    removals: list[str]
    tree_removals: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.directories or self.secrets or self.removals or self.tree_removals)


def uid_of(owner: str | None) -> int | None:
    if owner is None:
        return None
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError as exc:
        raise JobPathsError(f'the user {owner!r} does not exist') from exc


def gid_of(group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise JobPathsError(f'the group {group!r} does not exist') from exc


def mode_of(mode: t.Any) -> int | None:
    """An octal mode: a string such as ``'0700'`` or an int already meant as octal bits (``0o700``)."""
    if mode is None:
        return None
    if isinstance(mode, int):
        value = mode
    else:
        try:
            value = int(str(mode), 8)
        except ValueError as exc:
            raise JobPathsError(f'mode {mode!r} is not an octal number such as 0700') from exc
    if not 0 <= value <= 0o7777:
        raise JobPathsError(f'mode {mode!r} is out of range')
    return value


def attributes(entry: t.Mapping[str, t.Any]) -> Attributes:
    return Attributes(uid=uid_of(entry.get('owner')), gid=gid_of(entry.get('group')), mode=mode_of(entry.get('mode')))


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel's path walk allows


def _trusted(directory: os.stat_result) -> bool:
    """Only root can change the entries of this directory (root's, not writable by group or others)."""
    return directory.st_uid == 0 and not directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def open_directory(path: str, create: bool = False) -> int | None:
    """A descriptor of the directory ``path``, reached from / one component at a time without following a
    symbolic link that a non-root user could have made or replaced: a link is followed only when root owns it
    and only root can write the directory holding it (``/var/run`` on Debian). Missing components are created
    (root, 0755) when ``create``; otherwise None when one is missing.

    A user who owns the parent of its repository could otherwise swap the repository for a link to
    ``/usr/local/bin`` and have the converge hand that directory over (chown) to it."""
    parts = [part for part in path.split('/') if part]
    if not path.startswith('/'):
        raise JobPathsError(f'{path} is not an absolute path')
    fd = os.open('/', _DIRECTORY_FLAGS)
    walked, links = '', 0
    try:
        while parts:
            name = parts.pop(0)
            if name in ('.', '..'):
                raise JobPathsError(f'{path}: "." and ".." are not allowed in a managed path')
            try:
                found = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(name, 0o755, dir_fd=fd)
                found = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(found.st_mode):
                links += 1
                if not (_trusted(os.fstat(fd)) and found.st_uid == 0) or links > _MAX_LINKS:
                    raise JobPathsError(f'{path}: {walked}/{name} is a symbolic link in a directory that a user other '
                                        'than root can write; refusing to follow it (replace it by a directory)')
                # Only root could have made it: resolve its target against where it stands and walk that from /,
                # each component checked again.
                target = posixpath.normpath(posixpath.join(walked or '/', os.readlink(name, dir_fd=fd)))
                fd, walked = _reopen(fd, '/'), ''
                parts = [part for part in target.split('/') if part] + parts
                continue
            if not stat.S_ISDIR(found.st_mode):
                raise JobPathsError(f'{path}: {walked}/{name} exists but is not a directory')
            fd = _reopen(fd, name)
            walked = f'{walked}/{name}'
        return fd
    except BaseException:
        os.close(fd)
        raise


def _reopen(fd: int, name: str) -> int:
    """The directory ``name`` in ``fd`` (or / for '/'), never through a link; ``fd`` is closed."""
    try:
        return os.open(name, _DIRECTORY_FLAGS) if name == '/' else os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def differs(found: os.stat_result | None, wanted: Attributes) -> bool:
    if found is None:
        return True
    return ((wanted.uid is not None and found.st_uid != wanted.uid)
            or (wanted.gid is not None and found.st_gid != wanted.gid)
            or (wanted.mode is not None and stat.S_IMODE(found.st_mode) != wanted.mode))


def _plan_directory(item: Directory, planned: set[str]) -> os.stat_result | None | bool:
    """The directory's current state when it needs work, False when it does not."""
    fd = open_directory(item.path)
    if fd is None:
        return False if item.path in planned and item.attributes.empty else None  # else an earlier entry creates it
    try:
        return _refuse_another_owner(item, fd) if differs(os.fstat(fd), item.attributes) else False
    finally:
        os.close(fd)


def _refuse_another_owner(item: Directory, fd: int) -> os.stat_result:
    """A directory that belongs to another user is never taken over, root's only while it is empty (a fresh
    mount point). Checked when planning and again on the descriptor that is changed."""
    found = os.fstat(fd)
    wanted = item.attributes.uid
    if wanted is not None and found.st_uid != wanted and (found.st_uid != 0 or os.listdir(fd)):
        raise JobPathsError(f'{item.path} exists and belongs to {_user_name(found.st_uid)}, not to '
                            f'{_user_name(wanted)}: it is not taken over (give this instance a directory of its own)')
    return found


def _content_of(path: str) -> bytes | None:
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _plan_secret(item: SecretFile) -> tuple[os.stat_result | None, bool] | None:
    """(current state, content differs) when the file needs writing, None when it does not."""
    found = _stat(item.path)
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise JobPathsError(f'{item.path} exists but is not a regular file')
    content_differs = found is None or _content_of(item.path) != item.content.encode('utf-8')
    if content_differs or differs(found, item.attributes):
        return found, content_differs
    return None


def prune_candidates(directories: t.Iterable[str], wanted: t.Iterable[str]) -> list[str]:
    """Regular, non-hidden files directly in ``directories`` that are not wanted, as ansible.builtin.find
    lists them by default (no recursion, no hidden files, symlinks are no files)."""
    keep = {os.path.normpath(path) for path in wanted}
    found = []
    for directory in dict.fromkeys(directories):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue  # a first run in check mode: the directory is not there yet
        for name in names:
            path = os.path.join(directory, name)
            if name.startswith('.') or os.path.normpath(path) in keep:
                continue
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path)
    return sorted(found)


def _refuse_parent(parent: str) -> None:
    """A parent of subdirectories_of must be a normalised absolute path, no system directory nor a parent of one,
    and no symbolic link: its subdirectories are removed with everything in them."""
    if not parent.startswith('/') or posixpath.normpath(parent) != parent:
        raise JobPathsError(f'prune.subdirectories_of: {parent!r} is not a normalised absolute path')
    if parent == '/' or parent in SYSTEM_DIRECTORIES or any(known.startswith(parent + '/') for known in SYSTEM_DIRECTORIES):
        raise JobPathsError(f'prune.subdirectories_of: {parent!r} is a system directory or holds one; its '
                            'subdirectories are never removed')
    if os.path.islink(parent):
        raise JobPathsError(f'prune.subdirectories_of: {parent!r} is a symbolic link; name the directory itself')


def _holds(directory: str, paths: t.Iterable[str]) -> bool:
    return any(path == directory or path.startswith(directory + '/') for path in paths)


def unlisted_subdirectories(parents: t.Iterable[str], listed: t.Iterable[str]) -> list[str]:
    """Directories directly in ``parents`` that neither are nor hold one of ``listed`` (the wanted directories,
    secret files and kept files) (no hidden ones; a symbolic link is no directory): the secrets directories of
    instances that are gone."""
    wanted = {os.path.normpath(path) for path in listed}
    found = []
    for parent in dict.fromkeys(parents):
        _refuse_parent(parent)
        try:
            names = os.listdir(parent)
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(parent, name)
            if not name.startswith('.') and not _holds(path, wanted) and stat.S_ISDIR(os.lstat(path).st_mode):
                found.append(path)
    return sorted(found)


def plan(directories: t.Sequence[Directory], secrets: t.Sequence[SecretFile], prune_dirs: t.Sequence[str],
         keep: t.Sequence[str], prune_parents: t.Sequence[str] = ()) -> PathChanges:
    """Decide everything; reads the file system, changes nothing."""
    the_plan = PathChanges(directories=[], secrets=[], removals=[])
    planned: set[str] = set()
    for directory in directories:
        state = _plan_directory(directory, planned)
        if state is not False:
            the_plan.directories.append((directory, t.cast('os.stat_result | None', state)))
            planned.add(directory.path)
    for secret in secrets:
        needed = _plan_secret(secret)
        if needed is not None:
            the_plan.secrets.append((secret, needed[0], needed[1]))
    the_plan.removals = prune_candidates(prune_dirs, [secret.path for secret in secrets] + list(keep))
    wanted = [directory.path for directory in directories] + [secret.path for secret in secrets] + list(keep)
    the_plan.tree_removals = unlisted_subdirectories(prune_parents, wanted)
    return the_plan


def ensure_directory(item: Directory) -> None:
    """Create it when missing (parents too, root's, 0755), then set what the entry asks for on the directory
    reached without following an untrusted link; an entry without owner, group and mode leaves an existing
    directory alone."""
    fd = t.cast(int, open_directory(item.path, create=True))
    try:
        _refuse_another_owner(item, fd)
        _set_attributes(fd, item.attributes)
    finally:
        os.close(fd)


def _set_attributes(target: str | int, wanted: Attributes) -> None:
    """Owner, group and mode of a path or an open descriptor (a directory opened by ``open_directory``)."""
    found = os.stat(target)
    if (wanted.uid is not None and found.st_uid != wanted.uid) or (wanted.gid is not None and found.st_gid != wanted.gid):
        os.chown(target, -1 if wanted.uid is None else wanted.uid, -1 if wanted.gid is None else wanted.gid)
    if wanted.mode is not None and stat.S_IMODE(found.st_mode) != wanted.mode:
        os.chmod(target, wanted.mode)


def write_secret(mover: Mover, item: SecretFile, content_differs: bool) -> None:
    """New content is written atomically and is never readable by others on the way (see _io.write_atomic); only
    owner or mode differing is fixed in place."""
    if not content_differs:
        _set_attributes(item.path, item.attributes)
        return
    attributes = item.attributes
    _io.write_atomic(mover, item.path, item.content.encode('utf-8'), attributes.mode, attributes.uid, attributes.gid)


def apply(mover: Mover, the_plan: PathChanges) -> None:
    for directory, dummy in the_plan.directories:
        ensure_directory(directory)
    for secret, dummy, content_differs in the_plan.secrets:
        write_secret(mover, secret, content_differs)
    for path in the_plan.removals:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    for path in the_plan.tree_removals:
        # rmtree on Linux works through directory descriptors: a link planted inside is removed, never followed.
        shutil.rmtree(path)


def describe(found: os.stat_result | None, kind: str, secret: bool = False) -> str:
    """A diff side: state, owner, group and mode, never content (a secret file only says it is secret)."""
    if found is None:
        return 'state: absent\n'
    lines = [f'state: {kind}', f'owner: {_user_name(found.st_uid)}', f'group: {_group_name(found.st_gid)}',
             f'mode: {stat.S_IMODE(found.st_mode):04o}']
    return '\n'.join(lines + (['content: (secret, not shown)'] if secret else [])) + '\n'


def describe_wanted(found: os.stat_result | None, wanted: Attributes, kind: str, secret: bool = False,
                    content_differs: bool = False) -> str:
    """The after side: what the attributes will be (the current ones where the entry leaves them alone)."""
    uid = wanted.uid if wanted.uid is not None else (found.st_uid if found else os.geteuid())
    gid = wanted.gid if wanted.gid is not None else (found.st_gid if found else os.getegid())
    mode = wanted.mode if wanted.mode is not None else (stat.S_IMODE(found.st_mode) if found else None)
    lines = [f'state: {kind}', f'owner: {_user_name(uid)}', f'group: {_group_name(gid)}',
             f'mode: {mode:04o}' if mode is not None else 'mode: (default)']
    if secret:
        lines.append('content: (secret, not shown, changed)' if content_differs else 'content: (secret, not shown)')
    return '\n'.join(lines) + '\n'


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def diffs(the_plan: PathChanges) -> list[dict[str, str]]:
    """One diff per path that changes, with paths, owners and modes only; call it before ``apply``."""
    result = []
    for directory, found in the_plan.directories:
        result.append(_diff(directory.path, describe(found, 'directory'),
                            describe_wanted(found, directory.attributes, 'directory')))
    for secret, found, content_differs in the_plan.secrets:
        result.append(_diff(secret.path, describe(found, 'file', secret=True),
                            describe_wanted(found, secret.attributes, 'file', True, content_differs)))
    for path in the_plan.removals:
        result.append(_diff(path, describe(os.lstat(path), 'file'), 'state: absent\n'))
    for path in the_plan.tree_removals:
        result.append(_diff(path, describe(os.lstat(path), 'directory'), 'state: absent (with everything in it)\n'))
    return result


def _diff(path: str, before: str, after: str) -> dict[str, str]:
    return {'before_header': path, 'after_header': path, 'before': before, 'after': after}
