# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""dump_arrived.py, the restore's wait for the dump's first data, run as job.sh runs it (python3 -I, the dump on
stdin): it must tell data from the end of the input and leave every byte to the restore command after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HELPER = Path(__file__).resolve().parents[3] / 'roles' / 'provider_common' / 'files' / 'dump_arrived.py'


def start(stdin: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-I', str(HELPER)], stdin=stdin, stderr=subprocess.PIPE)


def test_data_in_the_pipe_is_arrived_and_left_unread():
    read, write = os.pipe()
    os.write(write, b'first bytes of the dump\n')
    helper = start(read)
    assert helper.wait(timeout=30) == 0
    os.write(write, b'and the rest\n')
    os.close(write)
    with os.fdopen(read, 'rb') as pipe:
        assert pipe.read() == b'first bytes of the dump\nand the rest\n'


def test_data_then_the_end_of_the_input_is_arrived():
    read, write = os.pipe()
    os.write(write, b'x')
    os.close(write)
    helper = start(read)
    assert helper.wait(timeout=30) == 0
    with os.fdopen(read, 'rb') as pipe:
        assert pipe.read() == b'x'


def test_the_end_of_the_input_without_data_is_not_arrived():
    read, write = os.pipe()
    os.close(write)
    helper = start(read)
    assert helper.wait(timeout=30) == 1
    os.close(read)


def test_a_slow_first_byte_is_waited_for():
    read, write = os.pipe()
    helper = start(read)
    time.sleep(1.0)
    assert helper.poll() is None   # still waiting: nothing arrived, and the writer is still there
    os.write(write, b'late')
    assert helper.wait(timeout=30) == 0
    os.close(write)
    with os.fdopen(read, 'rb') as pipe:
        assert pipe.read() == b'late'


def test_a_slow_end_without_data_is_not_arrived():
    read, write = os.pipe()
    helper = start(read)
    time.sleep(1.0)
    assert helper.poll() is None
    os.close(write)
    assert helper.wait(timeout=30) == 1
    os.close(read)


def test_a_regular_file_with_data_is_arrived_and_its_offset_kept(tmp_path):
    dump = tmp_path / 'dump.sql'
    dump.write_bytes(b'-- dump\n')
    with dump.open('rb') as handle:
        assert start(handle.fileno()).wait(timeout=30) == 0
        assert handle.read() == b'-- dump\n'
    (tmp_path / 'empty').write_bytes(b'')
    with (tmp_path / 'empty').open('rb') as handle:
        assert start(handle.fileno()).wait(timeout=30) == 1


def test_stdin_that_cannot_be_asked_fails_with_a_message():
    helper = start(subprocess.DEVNULL)   # /dev/null: readable at once, but FIONREAD is not supported on it
    stderr = helper.communicate(timeout=30)[1]
    assert helper.returncode == 2
    assert b'dump_arrived.py: cannot see whether the dump arrived on stdin: [Errno 25]' in stderr


def test_an_interrupt_while_waiting_ends_it_by_the_signal_without_a_traceback():
    read, write = os.pipe()
    helper = start(read)
    # Until it waits in poll (its signal handling is set up by then), at most 10 s.
    wchan = Path(f'/proc/{helper.pid}/wchan')
    for dummy in range(100):
        if 'poll' in wchan.read_text():
            break
        time.sleep(0.1)
    helper.send_signal(signal.SIGINT)
    stderr = helper.communicate(timeout=30)[1]
    os.close(write)
    os.close(read)
    assert helper.returncode == -signal.SIGINT
    assert stderr == b''
