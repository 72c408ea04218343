# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import stat
from unittest import mock

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _job_files as files


class Mover:
    """Stands in for AnsibleModule.atomic_move: a plain rename, and it records the mode it was handed."""

    def __init__(self):
        self.modes = []

    def atomic_move(self, src, dest, unsafe_writes=False, keep_dest_attrs=True):
        assert os.path.dirname(src) == os.path.dirname(dest), 'the temp file must live in the target directory'
        assert keep_dest_attrs is False
        self.modes.append(stat.S_IMODE(os.stat(src).st_mode))
        os.replace(src, dest)


def test_write_atomic_sets_the_mode_before_the_move_and_leaves_no_temp_file(tmp_path):
    mover = Mover()
    target = tmp_path / 'new' / 'restore'
    files.write_atomic(mover, files.DesiredFile(str(target), '#!/bin/sh\n', files.SCRIPT_MODE))
    assert target.read_text() == '#!/bin/sh\n'
    assert mover.modes == [0o755]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755
    assert os.listdir(tmp_path / 'new') == ['restore']


def test_write_atomic_cleans_up_when_the_move_fails(tmp_path):
    mover = mock.Mock()
    mover.atomic_move.side_effect = OSError('read-only file system')
    with pytest.raises(OSError):
        files.write_atomic(mover, files.DesiredFile(str(tmp_path / 'x.service'), 'x', files.UNIT_MODE))
    assert os.listdir(tmp_path) == []


def test_file_mode_and_read_text_of_missing_files(tmp_path):
    assert files.file_mode(str(tmp_path / 'missing')) is None
    assert files.read_text(str(tmp_path / 'missing')) is None


def test_remove_missing_file_is_fine(tmp_path):
    files.remove(str(tmp_path / 'missing'))
    assert not (tmp_path / 'missing').exists()


def test_remove_dir_if_empty_keeps_a_non_empty_dir(tmp_path):
    (tmp_path / 'keep').write_text('x')
    files.remove_dir_if_empty(str(tmp_path))
    assert (tmp_path / 'keep').exists()


def test_manifest_round_trip(tmp_path):
    path = tmp_path / 'job.json'
    path.write_text(files.render_manifest('job', ['/b', '/a'], ['job.timer']))
    assert files.read_manifest(str(path)) == {'files': ['/a', '/b'], 'timers': ['job.timer']}


@pytest.mark.parametrize('text', ['{"files": []}', '[]', 'nope'])
def test_unreadable_manifest(tmp_path, text):
    (tmp_path / 'job.json').write_text(text)
    with pytest.raises(files.JobFilesError, match='is not readable JSON'):
        files.read_manifest(str(tmp_path / 'job.json'))


def test_command_runner_passes_a_stable_environment():
    module = mock.Mock()
    module.run_command.return_value = (0, 'out', '')
    assert files.CommandRunner(module).run(['systemctl', 'daemon-reload']) == (0, 'out', '')
    module.run_command.assert_called_once_with(
        ['systemctl', 'daemon-reload'], environ_update={'LC_ALL': 'C', 'SYSTEMD_PAGER': '', 'SYSTEMD_COLORS': '0'})


def test_failing_systemctl_is_an_error_with_its_output():
    runner = mock.Mock()
    runner.run.return_value = (1, '', 'Unit x.timer not found.\n')
    with pytest.raises(files.JobFilesError, match=r'systemctl enable --now x.timer failed \(rc=1\): Unit x.timer not found.$'):
        files.Systemctl(runner).enable_now('x.timer')
