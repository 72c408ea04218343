# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one atomic writer: whole files only, never readable by others on the way, nothing left behind a failure."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _io


class Mover:
    """atomic_move as AnsibleModule does it for a file it creates: the umask's mode after the rename."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.modes_seen: list[int] = []

    def atomic_move(self, src, dest, unsafe_writes=False, keep_dest_attrs=True):
        if self.fail:
            raise OSError('the move failed')
        existed = os.path.exists(dest)
        self.modes_seen.append(stat.S_IMODE(os.stat(src).st_mode))
        os.rename(src, dest)
        if not existed:
            os.chmod(dest, 0o644)


def test_a_new_file_gets_its_mode_and_is_never_world_readable(tmp_path):
    mover = Mover()
    target = tmp_path / 'secret'
    _io.write_atomic(mover, str(target), b'pw \'"$`%\xc3\xbc', 0o600)
    assert target.read_bytes() == b'pw \'"$`%\xc3\xbc'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # The move went over a 0600 placeholder, so the umask's 0644 never applied; the temp file was 0600.
    assert mover.modes_seen == [0o600]
    assert sorted(os.listdir(tmp_path)) == ['secret']


def test_an_existing_file_is_replaced_whole(tmp_path):
    target = tmp_path / 'unit.service'
    target.write_text('old')
    target.chmod(0o600)
    _io.write_atomic(Mover(), str(target), b'new', 0o644)
    assert target.read_text() == 'new' and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ['unit.service']


@pytest.mark.parametrize('existing', [True, False])
def test_a_failed_move_leaves_the_old_file_or_nothing(tmp_path, existing):
    target = tmp_path / 'state.json'
    if existing:
        target.write_text('old')
    with pytest.raises(OSError, match='the move failed'):
        _io.write_atomic(Mover(fail=True), str(target), b'new', 0o600)
    assert sorted(os.listdir(tmp_path)) == (['state.json'] if existing else [])
    if existing:
        assert target.read_text() == 'old'


def test_attributes_not_given_are_left_alone(tmp_path):
    target = tmp_path / 'f'
    target.write_text('x')
    target.chmod(0o640)
    _io.set_attributes(str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    _io.set_attributes(str(target), mode=0o600, uid=os.getuid(), gid=os.getgid())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (target.stat().st_uid, target.stat().st_gid) == (os.getuid(), os.getgid())
