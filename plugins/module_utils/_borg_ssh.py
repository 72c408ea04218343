# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""borg's remote repositories over SSH: the URL, the pinned host key, the ssh command line and the server's
authorized_keys line. Pure functions, no I/O."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import shlex
import typing as t

# A public key line without options: the key type, the key and an optional comment.
_PUBLIC_KEY_LINE = re.compile(r'(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[A-Za-z0-9@.-]+) [A-Za-z0-9+/]+=*(?: [^\r\n]*)?')
# A job's public key as ssh-keygen writes it (the roles generate ed25519 keys only): type, key, one comment.
_JOB_PUBLIC_KEY = re.compile(r'ssh-ed25519 (?P<key>[A-Za-z0-9+/]+=*) \S+')
# The wire form of an ed25519 public key: the type's name and the 32-byte key, each after its length.
_ED25519_BLOB = b'\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20'
# What a backup server's authorized_keys line of a job starts with (server_authorized_keys_options).
SERVER_LINE_PREFIX = 'command="borg serve --append-only --restrict-to-repository '
_SSH_URL = re.compile(r'^ssh://(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?(?P<path>/\S*)$')


class SshError(ValueError):
    """A remote repository that cannot be reached safely."""


def _sh(args: t.Sequence[str]) -> str:
    return ' '.join(shlex.quote(str(arg)) for arg in args)


@dataclasses.dataclass(frozen=True)
class SshUrl:
    user: str
    host: str
    port: int | None
    path: str

    @property
    def known_hosts_name(self) -> str:
        """How ssh names this server in known_hosts: ``host`` on port 22, else ``[host]:port``."""
        return self.host if self.port in (None, 22) else f'[{self.host}]:{self.port}'

    @property
    def serve_path(self) -> str:
        """The path ``borg serve --restrict-to-path`` sees: absolute, or relative to the home (``/~/`` or ``/./``)."""
        for home in ('/~/', '/./'):
            if self.path.startswith(home):
                return self.path[len(home):]
        return self.path


def parse_ssh_url(url: str) -> SshUrl:
    match = _SSH_URL.fullmatch(url or '')
    if not match:
        raise SshError(f'repository.url {url!r} is not ssh://user@host[:port]/path')
    port = int(match.group('port')) if match.group('port') else None
    if port is not None and not 0 < port < 65536:
        raise SshError(f'repository.url {url!r}: port {port} is out of range')
    return SshUrl(match.group('user'), match.group('host'), port, match.group('path'))


def names_server(known_hosts: str, name: str) -> bool:
    """Whether a known_hosts text has a line for ``name``; hashed lines (``|1|...``) cannot be read, so they count."""
    for line in known_hosts.splitlines():
        fields = line.split()
        if fields and (fields[0].startswith('|1|') or name in fields[0].split(',')):
            return True
    return False


def public_key_line(public_key: str) -> str:
    """One public key line (``<type> <key> [comment]``, outer whitespace trimmed). A second line or options in front
    of the key would reach the server's authorized_keys unrestricted: they raise SshError."""
    line = (public_key or '').strip()
    if not _PUBLIC_KEY_LINE.fullmatch(line):
        raise SshError('the public key is not one line "<type> <key> [comment]" without options: '
                       f'{line[:60]!r}{"..." if len(line) > 60 else ""}')
    return line


def job_public_key(content: str) -> str:
    """``ssh-ed25519 <key>`` of a job's ``.pub`` file, which must hold exactly one line ``ssh-ed25519 <key>
    <comment>`` (outer whitespace aside) whose key is an ed25519 key. The comment is dropped: the caller puts the
    planned one (the file is the client's, and a client could write another host's comment)."""
    match = _JOB_PUBLIC_KEY.fullmatch((content or '').strip())
    blob = b''
    if match:
        try:
            blob = base64.b64decode(match.group('key'), validate=True)
        except (binascii.Error, ValueError):
            blob = b''
    if not match or len(blob) != len(_ED25519_BLOB) + 32 or not blob.startswith(_ED25519_BLOB):
        raise SshError('it is not exactly one line "ssh-ed25519 <key> <comment>" with an ed25519 key (as ssh-keygen '
                       'writes it)')
    return f'ssh-ed25519 {match.group("key")}'


def authorized_keys_line(public_key: str, path: str, append_only: bool = True) -> str:
    """The server side of a remote repository: this job's key may only run borg serve on its path."""
    command = ['borg', 'serve', '--restrict-to-path', path] + (['--append-only'] if append_only else [])
    return f'command="{_sh(command)}",restrict {public_key_line(public_key)}'


def ssh_command() -> list[str]:
    """ssh with the options every borg connection uses: no user configuration, no agent, no prompt, and only the
    pinned host key (an unknown or changed one fails). ``rsh`` and the job script add the key and known_hosts."""
    return ['ssh', '-F', 'none', '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'GlobalKnownHostsFile=/dev/null',
            '-o', 'StrictHostKeyChecking=yes', '-o', 'UpdateHostKeys=no']


def rsh(directory: str) -> str:
    """``BORG_RSH`` with the job's key and pinned host key in ``directory`` (as borg.sh builds it in the job)."""
    return _sh(ssh_command() + ['-i', f'{directory}/ssh_key', '-o', f'UserKnownHostsFile={directory}/known_hosts'])


def server_authorized_keys_options(repository: str, storage_quota: str | None = None) -> str:
    """The options of a backup server's authorized_keys line (selfhost.backup.backup_server): append-only, this
    one repository (``--restrict-to-repository``: no other path, no sub-directory), an optional quota, and
    ``restrict`` (no forwarding, no pty)."""
    command = ['borg', 'serve', '--append-only', '--restrict-to-repository', repository]
    if storage_quota:
        command += ['--storage-quota', storage_quota]
    return f'command="{_sh(command)}",restrict'


def server_authorized_keys_line(public_key: str, repository: str, storage_quota: str | None = None) -> str:
    """A backup server's authorized_keys line of one job's public key."""
    return f'{server_authorized_keys_options(repository, storage_quota)} {public_key_line(public_key)}'


def server_job_line(options: str, content: str, comment: str) -> str:
    """A backup server's authorized_keys line rebuilt from a job's ``.pub`` file: ``options`` (the plan's
    server_authorized_keys_options), the file's key (job_public_key) and the planned ``comment``
    (``<job>@<client>``), by which the line is found again. Raises SshError on anything else."""
    if not options.startswith(SERVER_LINE_PREFIX):
        raise SshError(f'the options {options!r} are not a backup server\'s borg serve command')
    if not re.fullmatch(r'[A-Za-z0-9._@-]+', comment or ''):
        raise SshError(f'the key comment {comment!r} is not <job>@<host>')
    return f'{options} {job_public_key(content)} {comment}'
