# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Files of a backup job on the target: plan, verify, write atomically, remove; systemctl through one seam.

The module passes in two small collaborators so that this code stays testable without AnsibleModule:
a ``runner`` with ``run(argv) -> (rc, stdout, stderr)`` for every systemctl / systemd-analyze call, and a
``mover`` with ``atomic_move(src, dest, keep_dest_attrs=...)`` (the AnsibleModule itself).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _io

MANIFEST_VERSION = 1
UNIT_MODE = 0o644
SCRIPT_MODE = 0o755
MANIFEST_MODE = 0o644


class JobFilesError(Exception):
    """Verification or a systemctl call failed; nothing further was changed."""


class Runner(t.Protocol):
    def run(self, argv: list[str]) -> tuple[int, str, str]:
        ...  # pragma: no cover


Mover = _io.Mover


@dataclasses.dataclass(frozen=True)
class DesiredFile:
    path: str
    content: str
    mode: int

    @property
    def is_unit(self) -> bool:
        return self.path.endswith(('.service', '.timer'))


@dataclasses.dataclass
class FileChanges:
    writes: list[DesiredFile]
    removals: list[str]
    before: dict[str, str]

    @property
    def changes_units(self) -> bool:
        return any(item.is_unit for item in self.writes) or any(path.endswith(('.service', '.timer')) for path in self.removals)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def file_mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


def manifest_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, f'{name}.json')


def read_manifest(path: str) -> dict[str, t.Any]:
    """The files and timers installed last time; empty when there is no manifest yet."""
    text = read_text(path)
    if text is None:
        return {'files': [], 'timers': []}
    try:
        manifest = json.loads(text)
        return {'files': list(manifest['files']), 'timers': list(manifest['timers'])}
    except (ValueError, KeyError, TypeError) as exc:
        raise JobFilesError(f'The manifest {path} is not readable JSON with files and timers: {exc}') from exc


def render_manifest(name: str, files: t.Iterable[str], timers: t.Iterable[str]) -> str:
    manifest = {
        'version': MANIFEST_VERSION,
        'managed_by': 'selfhost.backup.backup_jobs',
        'name': name,
        'files': sorted(files),
        'timers': sorted(timers),
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + '\n'


def plan(desired: t.Sequence[DesiredFile], installed: t.Iterable[str]) -> FileChanges:
    """What to write (new content or wrong mode) and what to remove (installed before, not wanted now)."""
    wanted = {item.path for item in desired}
    before = {item.path: read_text(item.path) for item in desired}
    writes = [item for item in desired if before[item.path] != item.content or file_mode(item.path) != item.mode]
    removals = sorted(path for path in set(installed) - wanted if os.path.lexists(path))
    before.update({path: read_text(path) for path in removals})
    return FileChanges(writes=writes, removals=removals, before={path: text or '' for path, text in before.items()})


def diffs(the_plan: FileChanges, desired: t.Sequence[DesiredFile]) -> list[dict[str, str]]:
    after = {item.path: item.content for item in desired}
    paths = [item.path for item in the_plan.writes] + the_plan.removals
    return [
        {'before_header': path, 'after_header': path, 'before': the_plan.before[path], 'after': after.get(path, '')}
        for path in paths
    ]


def check_calendar(runner: Runner, expression: str) -> None:
    rc, dummy, err = runner.run(['systemd-analyze', 'calendar', expression])
    if rc != 0:
        raise JobFilesError(f'OnCalendar={expression!r} is not a valid systemd calendar expression: {err.strip()}')


def verify_units(runner: Runner, units: t.Sequence[DesiredFile], tmp_root: str | None = None) -> None:
    """Run systemd-analyze verify on copies named like the real units, so that Unit= and names resolve."""
    with tempfile.TemporaryDirectory(prefix='selfhost-backup-verify-', dir=tmp_root) as tmp_dir:
        candidates = []
        for item in units:
            candidate = os.path.join(tmp_dir, os.path.basename(item.path))
            with open(candidate, 'w', encoding='utf-8') as handle:
                handle.write(item.content)
            candidates.append(candidate)
        rc, out, err = runner.run(['systemd-analyze', 'verify'] + candidates)
    if rc != 0:
        details = (err or out).strip().replace(tmp_dir + os.sep, '')
        raise JobFilesError(f'systemd-analyze verify rejected the units, nothing was changed: {details}')


def write_atomic(mover: Mover, item: DesiredFile) -> None:
    """Write one file of a job atomically, owned by root (when the module runs as root), with its mode."""
    os.makedirs(os.path.dirname(item.path), mode=0o755, exist_ok=True)
    _io.write_atomic(mover, item.path, item.content.encode('utf-8'), item.mode, *((0, 0) if os.geteuid() == 0 else ()))


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_dir_if_empty(path: str) -> None:
    """Drop the state directory once the last manifest is gone, but never anything still in it."""
    try:
        os.rmdir(path)
    except OSError:
        pass


class CommandRunner:
    """The one seam for external commands: unit tests replace it, everything else goes through it."""

    # A stable, uncoloured, unpaged output that error messages can quote.
    ENVIRONMENT = {'LC_ALL': 'C', 'SYSTEMD_PAGER': '', 'SYSTEMD_COLORS': '0'}

    def __init__(self, module: t.Any) -> None:
        self.module = module

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(argv, environ_update=self.ENVIRONMENT)


class Systemctl:
    """The systemctl calls of a job; probes are read-only, so they also run in check mode."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def _ok(self, *args: str) -> bool:
        return self.runner.run(['systemctl'] + list(args))[0] == 0

    def _must(self, *args: str) -> None:
        rc, out, err = self.runner.run(['systemctl'] + list(args))
        if rc != 0:
            raise JobFilesError(f'systemctl {" ".join(args)} failed (rc={rc}): {(err or out).strip()}')

    def is_running(self, timer: str) -> bool:
        return self._ok('is-enabled', '--quiet', timer) and self._ok('is-active', '--quiet', timer)

    def is_enabled_or_active(self, timer: str) -> bool:
        return self._ok('is-enabled', '--quiet', timer) or self._ok('is-active', '--quiet', timer)

    def states(self, timers: t.Sequence[str]) -> dict[str, tuple[bool, bool]]:
        """Whether each timer is enabled and whether it is active, as is-enabled and is-active would say, from one
        ``systemctl show`` for all of them (one call per timer costs ~10 ms each, 100 timers a second or two).
        A timer the answer does not name is probed on its own."""
        if not timers:
            return {}
        rc, out, dummy = self.runner.run(['systemctl', 'show', '--property=Id,UnitFileState,ActiveState']
                                         + list(timers))
        found: dict[str, tuple[bool, bool]] = {}
        if rc == 0:
            for block in out.split('\n\n'):
                fields = dict(line.split('=', 1) for line in block.splitlines() if '=' in line)
                if fields.get('Id') in timers:
                    found[fields['Id']] = (fields.get('UnitFileState', '') in ENABLED_STATES,
                                           fields.get('ActiveState', '') in ACTIVE_STATES)
        for timer in timers:
            if timer not in found:
                found[timer] = (self._ok('is-enabled', '--quiet', timer), self._ok('is-active', '--quiet', timer))
        return found

    def daemon_reload(self) -> None:
        self._must('daemon-reload')

    def enable_now(self, timer: str) -> None:
        self._must('enable', '--now', timer)

    def disable_now(self, timer: str) -> None:
        self._must('disable', '--now', timer)

    def all_now(self, action: str, timers: t.Sequence[str]) -> None:
        """``systemctl enable --now`` (or disable) of every timer in one call: each enable reloads systemd, which
        for a first converge of many instances cost more than everything else. When it fails, the timers one by
        one, so that the error names the one that fails (and so its instance)."""
        if not timers:
            return
        if self._ok(action, '--now', *timers):
            return
        for timer in timers:
            self._must(action, '--now', timer)


# The UnitFileState values for which systemctl is-enabled succeeds, and the ActiveState values for is-active.
ENABLED_STATES = frozenset(('enabled', 'enabled-runtime', 'static', 'alias', 'indirect', 'generated'))
ACTIVE_STATES = frozenset(('active', 'reloading', 'refreshing'))
