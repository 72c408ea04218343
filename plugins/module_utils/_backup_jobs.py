# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""One run of selfhost.backup.backup_jobs over its jobs: decide, verify, write, reload once, timers.

Every job goes through the same phases, each phase for all jobs before the next one, so that many jobs cost
one ``systemd-analyze verify`` and one ``systemctl daemon-reload``:

0. ``job_params`` and ``prune_names``: the wanted jobs, and the installed jobs of the pruned family that are not
   wanted (each becomes a job with ``state: absent``);
1. ``prepare``: build the files, check the calendars, plan writes and removals (no change); a job being removed
   spares the files and timers a job being installed owns;
2. ``systemd-analyze verify`` of every unit that is about to change (outside check mode);
3. ``apply``: stop dropped timers, write and remove files, manifests;
4. one ``daemon-reload`` when any unit file changed;
5. ``finish``: enable and start (or stop and disable) the timers, which needs the reloaded units: their states
   from one ``systemctl show``, then one ``systemctl enable --now`` (and one ``disable --now``) for the timers of
   every job, since each of these calls reloads systemd.

The module passes itself in as ``module`` (``check_mode``, ``_diff``, ``tmpdir``, ``atomic_move``) and a
``runner`` for systemctl and systemd-analyze.
"""

from __future__ import annotations

import os
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _job_files as files
from ansible_collections.selfhost.backup.plugins.module_utils._backup_job import (
    JOB_NAME, JOB_SPEC, Job, JobSpecError, build_job, removal_candidates)
from ansible_collections.selfhost.backup.plugins.module_utils._job_files import Systemctl


MANIFEST_SUFFIX = '.json'


def job_params(jobs: t.Sequence[t.Mapping[str, t.Any]], shared: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """The options of each wanted job, the shared ones (directories, daemon_reload) included."""
    names = [job['name'] for job in jobs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise JobSpecError(f'jobs: the names {", ".join(twice)} are used more than once')
    return [dict(job) | dict(shared) for job in jobs]


def prune_names(state_dir: str, prefixes: t.Sequence[str], wanted: t.Sequence[t.Mapping[str, t.Any]]) -> list[str]:
    """The installed jobs (manifests in ``state_dir``) whose names start with one of ``prefixes`` and that no
    wanted job names. Read-only."""
    for prefix in prefixes:
        if not JOB_NAME.fullmatch(prefix):
            raise JobSpecError(f'prune {prefix!r} does not match {JOB_NAME.pattern!r}')
    try:
        manifests = os.listdir(state_dir) if prefixes else []
    except FileNotFoundError:
        return []
    names = {job['name'] for job in wanted}
    # Only what this module could have written is a manifest: a job's name, not a directory. Anything else there
    # (a copy made by hand, "app copy.json") is no job and must not stop every later run.
    installed = (entry[:-len(MANIFEST_SUFFIX)] for entry in manifests
                 if entry.startswith(tuple(prefixes)) and entry.endswith(MANIFEST_SUFFIX)
                 and not os.path.isdir(os.path.join(state_dir, entry)))
    return sorted(name for name in installed if JOB_NAME.fullmatch(name) and name not in names)


def absent_params(name: str, shared: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The options of a job to remove: its name, state absent, the defaults, the shared options."""
    defaults = {key: spec.get('default') for key, spec in JOB_SPEC.items()}
    return defaults | {'name': name, 'state': 'absent'} | dict(shared)


class Calendars:
    """systemd-analyze calendar, once per distinct expression of the whole run."""

    def __init__(self, runner: files.Runner) -> None:
        self.runner = runner
        self.checked: set[str] = set()

    def check(self, expressions: t.Iterable[str]) -> None:
        for expression in expressions:
            if expression not in self.checked:
                files.check_calendar(self.runner, expression)
                self.checked.add(expression)


class BackupJob:
    """One job; ``params`` are its options (name, state, exec_start, ..., unit_dir, state_dir)."""

    def __init__(self, params: t.Mapping[str, t.Any], module: t.Any, runner: files.Runner) -> None:
        self.params = params
        self.module = module
        self.runner = runner
        self.systemctl = Systemctl(runner)
        self.manifest = files.manifest_path(params['state_dir'], params['name'])
        self.changed = False
        self.needed = False
        self.job: Job | None = None
        self.plan = files.FileChanges(writes=[], removals=[], before={})
        self.installed: dict[str, t.Any] = {'files': [], 'timers': []}
        self.manifest_text = ''
        self.timers: list[str] = []

    @property
    def present(self) -> bool:
        return self.params['state'] == 'present'

    @property
    def units_changed(self) -> bool:
        return self.needed and self.plan.changes_units

    def prepare(self, calendars: Calendars) -> None:
        self.installed = files.read_manifest(self.manifest)
        if self.present:
            self._prepare_present(calendars)
        else:
            self._prepare_absent()

    def _prepare_present(self, calendars: Calendars) -> None:
        job = self.job = build_job(dict(self.params))
        calendars.check(job.calendars)
        self.plan = files.plan(job.files, self.installed['files'])
        self.manifest_text = files.render_manifest(job.name, [item.path for item in job.files], job.timers)
        self.needed = bool(self.plan.writes or self.plan.removals) or files.read_text(self.manifest) != self.manifest_text
        self.timers = list(job.timers)

    def _prepare_absent(self) -> None:
        candidates, timers = removal_candidates(dict(self.params), self.installed['files'], self.installed['timers'])
        self.plan = files.plan([], candidates)
        # Probes are read-only, so they run in check mode too.
        self.timers = [timer for timer in timers if self.systemctl.is_enabled_or_active(timer)]
        self.needed = bool(self.plan.removals or self.timers or os.path.exists(self.manifest))

    def spare(self, owned_files: t.Collection[str], owned_timers: t.Collection[str]) -> None:
        """A job being removed leaves alone the files and timers a job being installed in the same run owns
        (instance ``app-check`` pruned while instance ``app`` gains its check job ``app-check``)."""
        if self.present:
            return
        self.plan = files.FileChanges(writes=[], removals=[path for path in self.plan.removals if path not in owned_files],
                                      before=self.plan.before)
        self.timers = [timer for timer in self.timers if timer not in owned_timers]
        self.needed = bool(self.plan.removals or self.timers or os.path.exists(self.manifest))

    def units_to_verify(self) -> list[files.DesiredFile]:
        return list(self.job.units) if self.job is not None and self.units_changed else []

    def apply(self) -> None:
        """Write and remove this job's files; no daemon-reload (the caller runs one for all jobs)."""
        self.changed = self.needed
        if not self.needed or self.module.check_mode:
            return
        if self.present:
            self._apply_present()
        else:
            self._apply_absent()

    def _apply_present(self) -> None:
        job = t.cast(Job, self.job)
        # Record the union first: if anything below fails, a later state=absent still finds every file.
        union = files.render_manifest(job.name, set(self.installed['files']) | {item.path for item in job.files},
                                      set(self.installed['timers']) | set(job.timers))
        files.write_atomic(self.module, files.DesiredFile(self.manifest, union, files.MANIFEST_MODE))
        self._stop([timer for timer in self.installed['timers'] if timer not in job.timers])
        for item in self.plan.writes:
            files.write_atomic(self.module, item)
        for path in self.plan.removals:
            files.remove(path)
        files.write_atomic(self.module, files.DesiredFile(self.manifest, self.manifest_text, files.MANIFEST_MODE))

    def _apply_absent(self) -> None:
        for timer in self.timers:
            self.systemctl.disable_now(timer)
        for path in self.plan.removals:
            files.remove(path)
        files.remove(self.manifest)
        files.remove_dir_if_empty(self.params['state_dir'])

    def _stop(self, timers: list[str]) -> None:
        for timer in timers:
            if self.systemctl.is_enabled_or_active(timer):
                self.systemctl.disable_now(timer)

    def finish(self, states: t.Mapping[str, tuple[bool, bool]]) -> tuple[list[str], list[str]]:
        """The timers to enable and start, and those to stop and disable, from their ``states`` (enabled,
        active); the caller acts on those of every job at once (not in check mode)."""
        enable: list[str] = []
        disable: list[str] = []
        if not self.present:
            return enable, disable
        for timer in self.timers:
            enabled, active = states[timer]
            if self.params['timer_enabled']:
                needed = not (enabled and active)
                (enable if needed else []).append(timer)
            else:
                needed = enabled or active
                (disable if needed else []).append(timer)
            self.changed = self.changed or needed
        return enable, disable

    def result(self) -> dict[str, t.Any]:
        job = self.job
        return {
            'changed': self.changed,
            'backup_service': f'{self.params["name"]}.service',
            'restore_script': job.restore_script if job else None,
            'files': [item.path for item in job.files] if job else list(self.plan.removals),
            'timers': list(self.timers),
        }

    def diff(self) -> list[dict[str, str]]:
        return files.diffs(self.plan, self.job.files if self.job else [])


def run(jobs: t.Sequence[BackupJob], module: t.Any, runner: files.Runner, daemon_reload: bool) -> None:
    """All phases for all jobs (see the module docstring). A JobSpecError, JobFilesError or OSError stops the
    run; ``job.changed`` of each job says whether it had already changed the host."""
    calendars = Calendars(runner)
    for job in jobs:
        job.prepare(calendars)
    owned_files = {item.path for job in jobs if job.job is not None for item in job.job.files}
    owned_timers = {timer for job in jobs if job.present for timer in job.timers}
    for job in jobs:
        job.spare(owned_files, owned_timers)
    if not module.check_mode:
        units = [unit for job in jobs for unit in job.units_to_verify()]
        if units:
            files.verify_units(runner, units, module.tmpdir)
    try:
        for job in jobs:
            job.apply()
    finally:
        # Only jobs that were applied count (job.changed), so after a failure too the units the jobs before the
        # failing one wrote reach systemd: the next converge finds them unchanged and would never reload.
        if daemon_reload and not module.check_mode and any(job.changed and job.units_changed for job in jobs):
            Systemctl(runner).daemon_reload()
    systemctl = Systemctl(runner)
    states = systemctl.states([timer for job in jobs if job.present for timer in job.timers])
    enable: list[str] = []
    disable: list[str] = []
    for job in jobs:
        now_enabled, now_disabled = job.finish(states)
        enable += now_enabled
        disable += now_disabled
    if not module.check_mode:
        systemctl.all_now('disable', disable)
        systemctl.all_now('enable', enable)
