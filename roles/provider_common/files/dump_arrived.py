# Managed by Ansible (selfhost.backup.provider_common): local changes will be overwritten.
"""Whether a dump's first data has arrived on stdin, without reading any of it.

The restore waits here before it stops the units and starts the restore command, which then reads the same stdin
from its first byte: the dump is not copied through another process. Waits (without a time limit, as long as the
tool takes to send its first byte) until stdin is readable, then asks how many bytes are there (FIONREAD): some
means the dump arrived (exit 0); none means the end of the input, the tool sent nothing (exit 1). Exit 2 with a
message when stdin cannot be asked. Run by job.sh (``restore_arriving_dump``) as ``python3 -I``.
"""

from __future__ import annotations

import array
import fcntl
import select
import signal
import sys
import termios


def arrived(fd: int) -> bool:
    """True once data is readable on the descriptor, False at its end; nothing is read."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    poller.poll()  # no timeout: until data, the end of the input or an error
    count = array.array('i', [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0] > 0


def main() -> int:
    # Ctrl-C while the restore waits (a slow repository) ends this as it ends the tool and the job script: by the
    # signal, without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        return 0 if arrived(0) else 1
    except OSError as exc:
        print(f'dump_arrived.py: cannot see whether the dump arrived on stdin: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
