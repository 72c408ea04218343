# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_job_paths without AnsibleModule: plan, apply with a plain mover, describe."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _job_paths as paths


class Mover:
    def __init__(self, fail=False):
        self.fail = fail

    def atomic_move(self, src, dest, unsafe_writes=False, keep_dest_attrs=True):
        if self.fail:
            raise OSError(28, 'No space left on device')
        shutil.move(src, dest)


def me(mode=None):
    return paths.Attributes(uid=os.geteuid(), gid=os.getegid(), mode=mode)


def test_a_directory_listed_twice_is_created_once_then_given_its_attributes(tmp_path):
    target = str(tmp_path / 'repo')
    entries = [paths.Directory(target, paths.Attributes()), paths.Directory(target, paths.Attributes()),
               paths.Directory(target, me(0o700))]
    the_plan = paths.plan(entries, [], [], [])
    assert [directory.attributes for directory, dummy in the_plan.directories] == [paths.Attributes(), me(0o700)]
    paths.apply(Mover(), the_plan)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert not paths.plan(entries, [], [], []).changed


def test_missing_parents_are_created_too(tmp_path):
    target = tmp_path / 'a' / 'b' / 'c'
    paths.apply(Mover(), paths.plan([paths.Directory(str(target), me(0o750))], [], [], []))
    assert target.is_dir() and stat.S_IMODE(os.stat(target).st_mode) == 0o750


def test_a_failed_move_leaves_no_temp_file(tmp_path):
    secret = paths.SecretFile(str(tmp_path / 'pass'), 's3cret', me(0o600))
    with pytest.raises(OSError):
        paths.apply(Mover(fail=True), paths.plan([], [secret], [], []))
    assert os.listdir(tmp_path) == []


def test_a_file_gone_before_pruning_is_no_error(tmp_path):
    (tmp_path / 'old').write_text('x')
    the_plan = paths.plan([], [], [str(tmp_path)], [])
    os.unlink(tmp_path / 'old')
    paths.apply(Mover(), the_plan)
    assert os.listdir(tmp_path) == []


def test_owner_and_group_are_fixed_only_when_they_differ(tmp_path, monkeypatch):
    (tmp_path / 'd').mkdir()
    chowned = []
    monkeypatch.setattr(os, 'chown', lambda path, uid, gid: chowned.append((uid, gid)))
    found = os.stat(tmp_path / 'd')
    paths.apply(Mover(), paths.Plan([(paths.Directory(str(tmp_path / 'd'), paths.Attributes(gid=found.st_gid + 1)), found)], [], []))
    assert chowned == [(-1, found.st_gid + 1)]


def test_unknown_ids_are_shown_as_numbers(tmp_path):
    found = os.stat(tmp_path)
    wanted = paths.Attributes(uid=4242420, gid=4242421)
    assert 'owner: 4242420\ngroup: 4242421\n' in paths.describe_wanted(found, wanted, 'directory')
    assert 'mode: (default)' in paths.describe_wanted(None, paths.Attributes(), 'directory')


class ModeCheckingMover(Mover):
    """Records the mode the destination has at the moment of the move, which the rename keeps."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def atomic_move(self, src, dest, unsafe_writes=False, keep_dest_attrs=True):
        self.modes.append(stat.S_IMODE(os.stat(dest).st_mode) if os.path.exists(dest) else None)
        os.replace(src, dest)
        if self.modes[-1] is None:
            os.chmod(dest, 0o644)  # what atomic_move does to a file it creates: the umask's mode


def test_a_new_secret_is_never_readable_by_others(tmp_path):
    mover = ModeCheckingMover()
    secret = paths.SecretFile(str(tmp_path / 'pass'), 's3cret', me(0o600))
    paths.apply(mover, paths.plan([], [secret], [], []))
    assert mover.modes == [0o600]
    assert stat.S_IMODE(os.stat(tmp_path / 'pass').st_mode) == 0o600
    assert (tmp_path / 'pass').read_text() == 's3cret'


def test_a_failed_move_of_a_new_secret_leaves_no_empty_file(tmp_path):
    secret = paths.SecretFile(str(tmp_path / 'pass'), 's3cret', me(0o600))
    with pytest.raises(OSError):
        paths.apply(Mover(fail=True), paths.plan([], [secret], [], []))
    assert not (tmp_path / 'pass').exists()
