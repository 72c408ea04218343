# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The one atomic file writer of the host modules (unit files, scripts, manifests, secrets, state)."""

from __future__ import annotations

import os
import tempfile
import typing as t


class Mover(t.Protocol):
    """What writes need of the AnsibleModule: its atomic_move."""

    def atomic_move(self, src: str, dest: str, unsafe_writes: bool = False, keep_dest_attrs: bool = True) -> None:
        ...  # pragma: no cover


def set_attributes(path: str, mode: int | None = None, uid: int | None = None, gid: int | None = None) -> None:
    """Owner, group and mode of ``path``; None leaves that attribute as it is."""
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.chmod(path, mode)


def write_atomic(mover: Mover, path: str, data: bytes, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never a part, and the content is
    never readable by others on the way.

    The data goes into a temp file in the same directory (created 0600 by mkstemp), which gets the attributes and
    is moved over the target. atomic_move gives a file it creates the umask's mode after the rename, but keeps the
    temp file's mode over an existing one: a missing target is first created empty, 0600, and removed again when
    the move fails.
    """
    directory = os.path.dirname(path)
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', dir=directory)
    placeholder = False
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        set_attributes(tmp_path, mode, uid, gid)
        if not os.path.lexists(path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            placeholder = True
        mover.atomic_move(tmp_path, path, keep_dest_attrs=False)
        placeholder = False
    finally:
        if os.path.lexists(tmp_path):
            os.unlink(tmp_path)
        if placeholder:
            os.unlink(path)  # an empty file must not stay behind a failed move
    set_attributes(path, mode, uid, gid)
