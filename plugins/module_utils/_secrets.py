# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Where the secrets of one instance live on the host (root-only files) and how they reach the job
(``LoadCredential=``), and the environment variable names a secret cannot take. Pure, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _job_script, _layout


ENV_NAME = re.compile(r'^[A-Z_][A-Z0-9_]*$')
# Credential names of secret environment variables: env.<NAME>; the script exports them inside the job only.
ENV_CREDENTIAL_PREFIX = 'env.'


def env_credential(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise _layout.ProviderError(f'environment variable name {name!r} does not match {ENV_NAME.pattern!r}')
    return f'{ENV_CREDENTIAL_PREFIX}{name}'


@dataclasses.dataclass(frozen=True)
class Secrets:
    """Which secret files an instance has: credential name -> host path, and what the role must write there."""

    credentials: dict[str, str]
    env_names: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # (host path, content) written root-only by the role; holds secrets


# Variables of the shell, the dynamic loader and systemd that a secret must not replace: exported into the
# tool's environment they would change what runs (PATH, LD_PRELOAD, BASH_ENV) or where it reads and writes.
SHELL_VARIABLES = frozenset({
    'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'IFS', 'PWD', 'OLDPWD', 'ENV', 'BASH_ENV', 'CDPATH', 'GLOBIGNORE',
    'SHELLOPTS', 'BASHOPTS', 'PS4', 'TMPDIR', 'CREDENTIALS_DIRECTORY', 'CACHE_DIRECTORY', 'RUNTIME_DIRECTORY',
    'STATE_DIRECTORY', 'INVOCATION_ID', 'JOURNAL_STREAM', 'NOTIFY_SOCKET',
    # bash's read-only and special variables: assigning one fails ("readonly variable") or changes the shell.
    'UID', 'EUID', 'PPID', 'GROUPS', 'FUNCNAME', 'RANDOM', 'SRANDOM', 'SECONDS', 'LINENO', 'EPOCHSECONDS',
    'EPOCHREALTIME', 'DIRSTACK', 'PIPESTATUS', 'HISTCMD', 'OPTIND', 'OPTARG', 'OPTERR', 'HOSTNAME', 'HOSTTYPE',
    'OSTYPE', 'MACHTYPE', 'PROMPT_COMMAND', 'POSIXLY_CORRECT', 'LANG', 'LANGUAGE', 'FUNCNEST', 'EXECIGNORE', 'TMOUT',
    'HISTFILE', 'HISTCONTROL', 'INPUTRC', 'TIMEFORMAT',
    # glibc's: they change what the tools' children load and how they convert text.
    'GCONV_PATH', 'LOCPATH', 'NLSPATH', 'MALLOC_CHECK_', 'HOSTALIASES', 'RES_OPTIONS', 'LOCALDOMAIN', 'TZDIR',
    # What systemd tells the hooks about the run (ExecStopPost=, OnFailure=).
    'SERVICE_RESULT', 'EXIT_CODE', 'EXIT_STATUS', 'MAINPID',
})
RESERVED_PREFIXES = ('BASH_', 'LD_', 'LC_', 'SELFHOST_BACKUP_', 'SYSTEMD_', 'MONITOR_', 'LISTEN_', 'WATCHDOG_')


# Variables the static job script sets itself (job.sh, restic.sh, borg.sh: a unit test keeps this list complete),
# and the data variables job.sh reads (_job_script.JOB_DATA; script_data writes them): a secret of such a name would
# fail to export (they are readonly) or change what the job does.
SCRIPT_GLOBALS = frozenset({
    'JOB_DATA', 'PROVIDER_INTERFACE', 'PROVIDER_DATA', 'JOB_CACHE', 'STATS_FILE', 'DRILL_STATS_FILE', 'RUN_BACKUP_CMD',
    'BACKUP_CMD_HIDES', 'STOPPED_UNITS', 'FORGET_RETRY_SECONDS', 'UNFINISHED_MARK', 'PROVIDER_VARIABLES',
    'EXEC_EXAMPLE', 'LOCK_TIMEOUT_EXIT', 'INTO_PATTERN', 'DATABASE_PATTERN', 'RESTORE_SNAPSHOT', 'RESTORE_INTO',
    'TARGET_NAMES', 'RESTORE_DATABASE', 'STATS_JSON', 'BACKUP_STARTED', 'LOCK_MARKER', 'LOCK_HANDED_OVER',
    'LOCKED_RUN', 'LOCKED_RUN_STOPPED', 'LOCKED_RUN_KILLED', 'LOCKED_RUN_MARKER', 'STOP_PENDING', 'WAIT_CUT',
    'STOP_SIGNALS', 'LOCKED_RUN_SESSION',
})


def check_environment_names(names: t.Iterable[str], provider_data: t.Iterable[str] = ()) -> None:
    """Refuse secret environment variables that the shell, the loader or the job script own; ``provider_data``
    names the provider's data variables."""
    taken = SHELL_VARIABLES | SCRIPT_GLOBALS | frozenset(_job_script.JOB_DATA) | frozenset(provider_data)
    odd = [repr(name) for name in names if not isinstance(name, str)]
    if odd:
        raise _layout.ProviderError(f'environment_secrets: names must be strings, got {", ".join(odd)}')
    refused = [name for name in sorted(names) if name in taken or name.startswith(RESERVED_PREFIXES)]
    if refused:
        raise _layout.ProviderError(', '.join(f'environment_secrets.{name}' for name in refused)
                                    + (': the name is' if len(refused) == 1 else ': these names are')
                                    + ' taken by the shell, systemd or the job script; a secret cannot use '
                                    + ('it' if len(refused) == 1 else 'them'))


def secrets(layout: _layout.Layout, passphrase: str | None, passphrase_file: str | None,
            environment_secrets: t.Mapping[str, str], provider_data: t.Iterable[str] = ()) -> Secrets:
    """The passphrase (inline value or an existing file) and secret environment variables of one instance.

    ``provider_data`` names the provider's data variables (readonly in the job script), which are taken too.
    """
    if (passphrase is None) == (passphrase_file is None):
        raise _layout.ProviderError('give exactly one of passphrase and passphrase_file')
    check_environment_names(environment_secrets, provider_data)
    credentials: dict[str, str] = {}
    files: list[tuple[str, str]] = []
    if passphrase is not None:
        credentials['passphrase'] = layout.secret_path('passphrase')
        files.append((credentials['passphrase'], passphrase))
    else:
        credentials['passphrase'] = t.cast(str, passphrase_file)
    names = tuple(sorted(environment_secrets))
    for name in names:
        credential = env_credential(name)
        credentials[credential] = layout.secret_path(credential)
        files.append((credentials[credential], str(environment_secrets[name])))
    return Secrets(credentials=credentials, env_names=names, files=tuple(files))
