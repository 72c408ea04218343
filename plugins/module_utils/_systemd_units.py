# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Pure rendering of the systemd service and timer units of a backup job (no I/O, no AnsibleModule)."""

from __future__ import annotations

import dataclasses
import re
import typing as t

MANAGED_HEADER = '# Managed by Ansible (selfhost.backup.backup_jobs): local changes will be overwritten.'

# Words made only of these characters need no quotes in a systemd command line or list.
_SAFE_WORD = re.compile(r'^[A-Za-z0-9_@+=:,./-]+$')
_C_ESCAPES = {'\\': '\\\\', '"': '\\"', '\n': '\\n', '\t': '\\t', '\r': '\\r'}

# Compatible with a job that dumps a database over a local socket, reaches a remote repository over the
# network and writes only below ReadWritePaths=: no device access, no kernel or clock changes, no setuid.
# Deliberately absent: ProtectHome=yes (would hide ~/.ssh keys and repositories under /home),
# MemoryDenyWriteExecute= (breaks JIT-using tools), a SystemCallFilter= (tool-specific, left to providers).
HARDENING = (
    ('ProtectSystem', 'strict'),
    ('ProtectHome', 'read-only'),
    ('PrivateTmp', 'yes'),
    ('PrivateDevices', 'yes'),
    ('NoNewPrivileges', 'yes'),
    ('ProtectKernelTunables', 'yes'),
    ('ProtectKernelModules', 'yes'),
    ('ProtectKernelLogs', 'yes'),
    ('ProtectControlGroups', 'yes'),
    ('ProtectClock', 'yes'),
    ('ProtectHostname', 'yes'),
    ('RestrictSUIDSGID', 'yes'),
    ('RestrictRealtime', 'yes'),
    ('RestrictNamespaces', 'yes'),
    ('LockPersonality', 'yes'),
    ('SystemCallArchitectures', 'native'),
    # AF_NETLINK: glibc's getaddrinfo() asks the kernel for local addresses through it.
    ('RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6 AF_NETLINK'),
    ('UMask', '0077'),
)


class UnitSpecError(ValueError):
    """A value cannot be rendered into a unit file safely."""


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    description: str
    exec_start: tuple[tuple[str, ...], ...]
    user: str = 'root'
    environment: tuple[tuple[str, str], ...] = ()
    credentials: tuple[tuple[str, str], ...] = ()
    nice: int | None = None
    io_scheduling_class: str | None = None
    io_scheduling_priority: int | None = None
    timeout_sec: int | None = None  # TimeoutStartSec=: how long a oneshot run may take (None: systemd's default)
    hardening: bool = True
    read_write_paths: tuple[str, ...] = ()
    cache_directory: str | None = None
    after: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    # Run as root around the main command (metrics, pings): ExecStartPre= before it, ExecStopPost= after it
    # whatever its result. They must never decide the job's result: a failure of theirs is ignored.
    start_hooks: tuple[tuple[str, ...], ...] = ()
    finish_hooks: tuple[tuple[str, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class TimerSpec:
    description: str
    unit: str
    on_calendar: str
    persistent: bool = True
    randomized_delay_sec: int = 0
    # FixedRandomDelay= (systemd >= 247): the delay is drawn once from the machine ID and the unit name.
    fixed_random_delay: bool = False


def _check_single_line(value: str, what: str) -> str:
    if '\n' in value or '\r' in value:
        raise UnitSpecError(f'{what} must be a single line: {value!r}')
    return value


def escape_specifiers(value: str) -> str:
    """systemd expands %-specifiers in most settings; a literal % is written %%."""
    return value.replace('%', '%%')


def quote_word(word: str, expand_dollar: bool = False) -> str:
    """Quote one word for a systemd list setting so that systemd reads back exactly ``word``.

    ``expand_dollar`` is for ExecStart=, where systemd substitutes $VAR and ${VAR}: $ is doubled there.
    """
    text = escape_specifiers(word)
    if expand_dollar:
        text = text.replace('$', '$$')
    if _SAFE_WORD.fullmatch(word):
        return text
    escaped = ''.join(_C_ESCAPES.get(char, _control_escape(char)) for char in text)
    return f'"{escaped}"'


def _control_escape(char: str) -> str:
    return f'\\x{ord(char):02x}' if ord(char) < 0x20 or ord(char) == 0x7f else char


def render_command(argv: t.Sequence[str]) -> str:
    """One ExecStart= value from an argv list; every argument reaches the program verbatim."""
    if not argv:
        raise UnitSpecError('an ExecStart command must have at least one element')
    if not argv[0].startswith('/'):
        # An absolute path also rules out systemd's prefixes (-, @, +, !, :) that would change the meaning.
        raise UnitSpecError(f'the program of an ExecStart command must be an absolute path: {argv[0]!r}')
    return ' '.join(quote_word(arg, expand_dollar=True) for arg in argv)


# systemd command prefixes: '-' ignores the exit status, '+' runs with full privileges (root, no sandbox).
HOOK_PREFIX = '-+'


def _hook_settings(spec: ServiceSpec) -> list[tuple[str, str]]:
    return ([('ExecStartPre', HOOK_PREFIX + render_command(argv)) for argv in spec.start_hooks]
            + [('ExecStopPost', HOOK_PREFIX + render_command(argv)) for argv in spec.finish_hooks])


def _section(name: str, settings: t.Iterable[tuple[str, str]]) -> list[str]:
    return [f'[{name}]'] + [f'{key}={value}' for key, value in settings]


def _unit_settings(description: str, after: t.Sequence[str] = (), wants: t.Sequence[str] = (),
                   on_failure: t.Sequence[str] = ()) -> list[tuple[str, str]]:
    settings = [('Description', escape_specifiers(_check_single_line(description, 'description')))]
    settings += [('Wants', ' '.join(quote_word(unit) for unit in wants))] if wants else []
    settings += [('After', ' '.join(quote_word(unit) for unit in after))] if after else []
    settings += [('OnFailure', ' '.join(quote_word(unit) for unit in on_failure))] if on_failure else []
    return settings


def _environment_settings(spec: ServiceSpec) -> list[tuple[str, str]]:
    return [('Environment', quote_word(f'{key}={value}')) for key, value in spec.environment]


def _credential_settings(spec: ServiceSpec) -> list[tuple[str, str]]:
    # Only the name and the host path are written; systemd copies the file into $CREDENTIALS_DIRECTORY.
    return [
        ('LoadCredential', escape_specifiers(f'{name}:{_check_single_line(path, "credential path")}'))
        for name, path in spec.credentials
    ]


def _scheduling_settings(spec: ServiceSpec) -> list[tuple[str, str]]:
    settings = [('Nice', str(spec.nice))] if spec.nice is not None else []
    if spec.io_scheduling_class is not None:
        settings.append(('IOSchedulingClass', spec.io_scheduling_class))
    if spec.io_scheduling_priority is not None:
        settings.append(('IOSchedulingPriority', str(spec.io_scheduling_priority)))
    if spec.timeout_sec is not None:
        settings.append(('TimeoutStartSec', str(spec.timeout_sec)))
    return settings


def _hardening_settings(spec: ServiceSpec) -> list[tuple[str, str]]:
    if not spec.hardening:
        return []
    settings = list(HARDENING)
    if spec.read_write_paths:
        settings.append(('ReadWritePaths', ' '.join(quote_word(path) for path in spec.read_write_paths)))
    return settings


def render_service(spec: ServiceSpec) -> str:
    service = [('Type', 'oneshot'), ('User', spec.user)]
    service += _environment_settings(spec) + _credential_settings(spec)
    if spec.cache_directory is not None:
        # Private to the job's user: the jobs' lock is the directory itself (job.sh), which no other user may
        # open, and the tools' caches are nobody else's business.
        service += [('CacheDirectory', quote_word(spec.cache_directory)), ('CacheDirectoryMode', '0700')]
    service += [('ExecStart', render_command(argv)) for argv in spec.exec_start]
    service += _hook_settings(spec)
    service += _scheduling_settings(spec) + _hardening_settings(spec)
    # No start rate limit: a manual start right after a failed or a quick run must run, never be refused with
    # "start request repeated too quickly" (systemd's default allows 5 starts in 10 s); the timers pace the runs.
    unit = _unit_settings(spec.description, spec.after, spec.wants, spec.on_failure) + [('StartLimitIntervalSec', '0')]
    lines = [MANAGED_HEADER] + _section('Unit', unit)
    lines += [''] + _section('Service', service)
    return '\n'.join(lines) + '\n'


def render_timer(spec: TimerSpec) -> str:
    timer = [
        ('OnCalendar', escape_specifiers(_check_single_line(spec.on_calendar, 'on_calendar'))),
        ('Persistent', 'true' if spec.persistent else 'false'),
        ('RandomizedDelaySec', str(spec.randomized_delay_sec)),
    ]
    if spec.fixed_random_delay:
        timer.append(('FixedRandomDelay', 'true'))
    timer.append(('Unit', spec.unit))
    lines = [MANAGED_HEADER] + _section('Unit', _unit_settings(spec.description))
    lines += [''] + _section('Timer', timer) + [''] + _section('Install', [('WantedBy', 'timers.target')])
    return '\n'.join(lines) + '\n'
