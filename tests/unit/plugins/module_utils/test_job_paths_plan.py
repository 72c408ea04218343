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
    paths.apply(Mover(), paths.PathChanges([(paths.Directory(str(tmp_path / 'd'), paths.Attributes(gid=found.st_gid + 1)), found)], [], []))
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


OTHER_UID = 54321  # a user that owns a directory in the attack tests (root may chown to any uid)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='the tests chown directories to another user: run as root')


def _victim(tmp_path):
    """A root-owned 0755 directory an attacker wants: the converge must never chown or chmod it."""
    victim = tmp_path / 'victim'
    victim.mkdir(mode=0o755)
    return victim


def _assert_untouched(victim):
    found = os.stat(victim)
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (0, 0o755)


@needs_root
def test_a_repository_swapped_for_a_link_by_its_parent_s_owner_is_refused_before_any_change(tmp_path):
    victim = _victim(tmp_path)
    home = tmp_path / 'home'
    home.mkdir()
    os.chown(home, OTHER_UID, OTHER_UID)
    (home / 'repo').symlink_to(victim)
    os.lchown(home / 'repo', OTHER_UID, OTHER_UID)
    entry = paths.Directory(str(home / 'repo'), paths.Attributes(uid=OTHER_UID, gid=OTHER_UID, mode=0o700))
    with pytest.raises(paths.JobPathsError, match=r'/repo is a symbolic link in a directory that a user other than '
                                                  r'root can write; refusing to follow it'):
        paths.plan([entry], [], [], [])
    with pytest.raises(paths.JobPathsError):
        paths.ensure_directory(entry)  # also when the link appears after the plan
    _assert_untouched(victim)


@needs_root
def test_a_link_even_root_s_own_is_refused_in_a_directory_a_user_can_write(tmp_path):
    victim = _victim(tmp_path)
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / 'repo').symlink_to(victim)
    with pytest.raises(paths.JobPathsError, match='refusing to follow it'):
        paths.plan([paths.Directory(str(shared / 'repo'), me(0o700))], [], [], [])
    _assert_untouched(victim)


def test_a_link_only_root_could_make_is_followed(tmp_path):
    os.chmod(tmp_path, 0o755)
    real = tmp_path / 'data'
    real.mkdir()
    (tmp_path / 'srv').symlink_to(real)
    if os.stat(tmp_path).st_uid != 0 or os.geteuid() != 0:
        pytest.skip('a trusted link needs a root-owned directory: run as root')
    entry = paths.Directory(str(tmp_path / 'srv' / 'repo'), me(0o700))
    paths.apply(Mover(), paths.plan([entry], [], [], []))
    assert stat.S_IMODE(os.stat(real / 'repo').st_mode) == 0o700


def test_a_file_in_the_path_is_named(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(paths.JobPathsError, match='/file exists but is not a directory'):
        paths.plan([paths.Directory(str(tmp_path / 'file' / 'repo'), me(0o700))], [], [], [])


@needs_root
def test_a_directory_of_another_user_is_not_taken_over(tmp_path):
    taken = tmp_path / 'taken'
    taken.mkdir()
    os.chown(taken, OTHER_UID, OTHER_UID)
    with pytest.raises(paths.JobPathsError, match=r'taken exists and belongs to 54321, not to root: it is not taken over'):
        paths.plan([paths.Directory(str(taken), paths.Attributes(uid=0, gid=0, mode=0o700))], [], [], [])
    assert os.stat(taken).st_uid == OTHER_UID


@needs_root
def test_root_s_directory_is_taken_over_only_while_empty(tmp_path):
    mount_point = tmp_path / 'mnt'
    mount_point.mkdir()
    entry = paths.Directory(str(mount_point), paths.Attributes(uid=OTHER_UID, gid=OTHER_UID, mode=0o700))
    paths.apply(Mover(), paths.plan([entry], [], [], []))
    assert os.stat(mount_point).st_uid == OTHER_UID
    system = tmp_path / 'system'
    system.mkdir()
    (system / 'important').write_text('x')
    with pytest.raises(paths.JobPathsError, match='belongs to root, not to 54321'):
        paths.plan([paths.Directory(str(system), paths.Attributes(uid=OTHER_UID, gid=OTHER_UID, mode=0o700))], [], [], [])
    assert os.stat(system).st_uid == 0


@needs_root
def test_a_directory_swapped_in_after_the_plan_is_not_taken_over(tmp_path):
    parent = tmp_path / 'srv'
    parent.mkdir()
    os.chown(parent, OTHER_UID, OTHER_UID)
    own = parent / 'pg'
    own.mkdir(mode=0o755)
    os.chown(own, OTHER_UID, OTHER_UID)
    entry = paths.Directory(str(own), paths.Attributes(uid=OTHER_UID, gid=OTHER_UID, mode=0o700))
    the_plan = paths.plan([entry], [], [], [])
    assert the_plan.changed
    # Between plan and apply the parent's owner puts another user's (non-empty) repository in its place.
    own.rename(parent / 'pg.mine')
    other = parent / 'pg'
    other.mkdir(mode=0o750)
    (other / 'config').write_text('x')
    os.chown(other, 99, 99)
    with pytest.raises(paths.JobPathsError, match='belongs to 99, not to 54321'):
        paths.apply(Mover(), the_plan)
    found = os.stat(other)
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (99, 0o750)


def test_a_trusted_link_with_dot_dot_in_its_target_is_followed(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('a trusted link needs root-owned directories: run as root')
    for directory in (tmp_path, tmp_path / 'a', tmp_path / 'data'):
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o755)
    (tmp_path / 'a' / 'srv').symlink_to('../data')
    entry = paths.Directory(str(tmp_path / 'a' / 'srv' / 'repo'), me(0o700))
    paths.apply(Mover(), paths.plan([entry], [], [], []))
    assert stat.S_IMODE(os.stat(tmp_path / 'data' / 'repo').st_mode) == 0o700
