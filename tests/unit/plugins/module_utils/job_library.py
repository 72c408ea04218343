# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers of the job script tests: the library (job.sh and the providers' halves) as the roles install it, and
the data file as bash reads it."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import typing as t

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _job_script, _layout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# The shell files of the job script: name in the library -> source in the roles.
JOB_FILES = {
    'job.sh': os.path.join(ROOT, 'roles', 'provider_common', 'files', 'job.sh'),
    'restic.sh': os.path.join(ROOT, 'roles', 'restic', 'files', 'restic.sh'),
    'borg.sh': os.path.join(ROOT, 'roles', 'borg', 'files', 'borg.sh'),
}
# What the job script runs beside them (not shell): the JSON listing of snapshots --json, the restore's wait for
# the dump's first data.
HELPER_FILES = {
    'snapshots_json.py': os.path.join(ROOT, 'roles', 'provider_common', 'files', 'snapshots_json.py'),
    'dump_arrived.py': os.path.join(ROOT, 'roles', 'provider_common', 'files', 'dump_arrived.py'),
}


def make_library(replace: t.Mapping[str, str] | None = None) -> str:
    """A library directory readable by every user (a test may drop root), with the real shell files; ``replace``
    maps a file name to other content (a stand-in provider half)."""
    directory = tempfile.mkdtemp(prefix='selfhost-backup-library-')
    os.chmod(directory, 0o755)
    for name, source in {**JOB_FILES, **HELPER_FILES}.items():
        shutil.copyfile(source, os.path.join(directory, name))
    for name, text in (replace or {}).items():
        with open(os.path.join(directory, name), 'w', encoding='utf-8') as handle:
            handle.write(text)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    return directory


# Prints each data variable as name, kind (a: array, A: associative array, s: string), count, elements, NUL-separated.
_DUMP_DATA = r'''
for __name in "$@"; do
  declare -n __ref="$__name"
  case "$(declare -p "$__name")" in
    "declare -A"*) __kind=A ;;
    "declare -a"*) __kind=a ;;
    *) __kind=s ;;
  esac
  printf '%s\0%s\0%s\0' "$__name" "$__kind" "${#__ref[@]}"
  [ "$__kind" != A ] || for __key in "${!__ref[@]}"; do printf '%s\0' "$__key"; done
  [ "${#__ref[@]}" -eq 0 ] || printf '%s\0' "${__ref[@]}"
  unset -n __ref
done
'''


def job_data(script: str) -> dict[str, t.Any]:
    """What bash makes of a data file: each variable as a string, a list or a dict, read back by bash itself."""
    assert script.endswith('source "$LIBRARY/job.sh"\n')
    names = re.findall(r'^readonly (?:-A )?([A-Z_][A-Z0-9_]*)=', script, re.M)
    program = script[:-len('source "$LIBRARY/job.sh"\n')] + _DUMP_DATA
    out = subprocess.run(['bash', '-c', program, 'data', *names], capture_output=True, check=True).stdout
    fields = out.decode().split('\0')
    data: dict[str, t.Any] = {}
    while len(fields) > 1:
        name, kind, count = fields[0], fields[1], int(fields[2])
        fields = fields[3:]
        if kind == 'A':
            data[name] = dict(zip(fields[:count], fields[count:2 * count]))
            fields = fields[2 * count:]
        else:
            data[name] = fields[0] if kind == 's' else fields[:count]
            fields = fields[1:] if kind == 's' else fields[count:]
    return data


def make_world(root: t.Any, library: str, tool: str, fake_tool: str, credentials: t.Mapping[str, str]) -> t.Any:
    """A host in ``root`` for the script tests: the library the data file sources (as /usr/local/lib/selfhost-backup),
    the fake ``tool`` (a shell script standing in for restic or borg) and its store, and the credentials the units
    would hand over (``$CREDENTIALS_DIRECTORY``)."""
    (root / 'lib').symlink_to(library)
    (root / 'store').mkdir()
    fake = root / tool
    fake.write_text(fake_tool)
    fake.chmod(0o755)
    creds = root / 'creds'
    creds.mkdir()
    for name, content in credentials.items():
        (creds / name).write_text(content)
    return root


# The operator commands run as root (their own check refuses anyone else).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='the operator commands run as root')


def run_binary(world: t.Any, path: t.Any, *args: str, stdout: t.Any = subprocess.PIPE,
               **extra_env: str) -> subprocess.CompletedProcess[bytes]:
    """The script interactively (root, no unit), its stdout as bytes."""
    env = {'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store'), **extra_env}
    return subprocess.run(['bash', str(path)] + list(args), stdout=stdout, stderr=subprocess.PIPE, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def last_argv(world: t.Any) -> list[bytes]:
    """The argv of the fake tool's last call."""
    return (world / 'store' / 'argv').read_bytes().split(b'\0')[:-1]


def assert_the_dump_never_reaches_a_terminal(world: t.Any, path: t.Any, tool_calls: t.Callable[[], int]) -> None:
    """``dump latest`` into a terminal fails, writes nothing there and is refused before the tool is called."""
    before = tool_calls()
    result, shown = dump_to_a_terminal(world, path)
    assert result.returncode == 1 and shown == b''
    assert 'refusing to write the dump to a terminal: redirect it to a file or a pipe' in result.stderr.decode()
    assert tool_calls() == before


def dump_to_a_terminal(world: t.Any, path: t.Any) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """``dump latest`` with a pty as its stdout: the result, and what reached the terminal (read before its last
    holder closes it)."""
    import pty  # pylint: disable=import-outside-toplevel
    controller, terminal = pty.openpty()
    try:
        result = run_binary(world, path, 'dump', 'latest', stdout=terminal)
        os.set_blocking(controller, False)
        try:
            shown = os.read(controller, 65536)
        except BlockingIOError:
            shown = b''
    finally:
        os.close(terminal)
        os.close(controller)
    return result, shown


@contextlib.contextmanager
def world_for_another_user(library: str, tool: str, fake_tool: str,
                           credentials: t.Mapping[str, str]) -> t.Iterator[pathlib.Path]:
    """make_world in a directory every user may enter (pytest's own are root's alone), for a tool that runs as the
    request's user: the store writable by all, the credentials root's alone (root reads them for the user)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix='selfhost-backup-exec-'))
    try:
        os.chmod(root, 0o755)
        make_world(root, library, tool, fake_tool, credentials)
        os.chmod(root / 'store', 0o777)
        os.chmod(root / 'creds', 0o700)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def exec_as_nobody(world: pathlib.Path, provider: str, provider_data: t.Any, *tool_args: str,
                   env_names: t.Sequence[str] = (), **spec: t.Any) -> subprocess.CompletedProcess[str]:
    """``exec -- <tool_args>`` of instance app of user nobody, by root, in a world_for_another_user: the tool must
    run as nobody. Every file in the world's creds is a credential of the instance."""
    credentials = {path.name: str(path) for path in sorted((world / 'creds').iterdir())}
    script = _job_script.ScriptSpec(
        layout=_layout.Layout(provider, 'app'), user='nobody', backup_name='db.sql', backup_cmd='true',
        restore_cmd='cat >/dev/null', credentials=credentials, env_names=tuple(env_names), stop_units=(),
        provider_data=provider_data, library=str(world / 'lib'), **spec)
    (world / 'job').write_text(_job_script.render_script(script))
    result = run_interactively(world, world / 'job', 'exec', '--', *tool_args)
    assert result.returncode == 0, result.stderr
    assert (world / 'store' / 'user').read_text() == 'nobody\n'
    return result


def run_interactively(world: pathlib.Path, path: t.Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The script as root by hand (no unit), from ``world``, its output as text."""
    return subprocess.run(['bash', str(path), *args], capture_output=True, text=True,
                          env={'PATH': os.environ['PATH'], 'FAKE_STORE': str(world / 'store')},
                          stdin=subprocess.DEVNULL, cwd=world, check=False)


# A dump that no text handling survives: NUL bytes, a byte that is no UTF-8, CR LF, no final newline.
BINARY_DUMP = b'\x00head\xff\r\n\x00\x01 tail\x00'


def binary_backup(world: t.Any, make_script: t.Callable[..., t.Any], run: t.Callable[..., t.Any]) -> t.Any:
    """A backup whose dump is BINARY_DUMP, made by backup_cmd through the real backup path; the script's path."""
    octal = ''.join(f'\\{byte:03o}' for byte in BINARY_DUMP)
    path = make_script(backup_cmd=f"printf '{octal}'")
    result = run(world, path, 'backup')
    assert result.returncode == 0, result.stderr
    assert (world / 'store' / 'data').read_bytes() == BINARY_DUMP
    return path
