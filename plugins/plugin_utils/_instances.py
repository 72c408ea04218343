# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Controller-side check of every instance of one provider (selfhost.backup.provider_instances), before any host
is touched: the instance names, each contract against its schemas, the provider's rules that no tool version
changes (``precheck`` of ``_restic`` and ``_borg``), and names of units that two instances would share.

Every violation is collected, each as ``<var>.<instance>...: <text>``; nothing here quotes a secret.
"""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _layout, _restic
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _servers

# Each provider's version-free rules, run after the schemas: (instance, request, settings, host) -> None or raise.
PRECHECKS: dict[str, t.Callable[[str, t.Mapping[str, t.Any], t.Mapping[str, t.Any], str], None]] = {
    'restic': _restic.precheck,
    'borg': _borg.precheck,
}
PROVIDER_ERRORS = (_layout.ProviderError, _restic.ResticError, _borg.BorgError)
# The units and extra jobs an instance may have (<job>.service, <job>-<suffix>.service, ...): whether or not
# they are enabled today, so that enabling a check later never makes two instances share a unit.
JOB_SUFFIXES = ('check', 'notify')
UNIT_TYPES = ('service', 'timer')


# Directories the converge must never create, chown or chmod, nor any parent of them (see _layout).
SYSTEM_DIRECTORIES = _layout.SYSTEM_DIRECTORIES
# Nothing of a job may live inside these: the root-only secrets and the job manifests, the kernel's and
# systemd's file systems, and the trees whose files root runs or reads as configuration (a directory created or
# taken over there would let the request's user add a systemd generator or a Python module root imports).
FORBIDDEN_TREES = (_layout.SECRETS_ROOT, _layout.STATE_DIR, '/proc', '/sys', '/dev', '/run', '/boot', '/etc', '/usr',
                   '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/var/run', '/var/lock')
# Settings that name a directory the converge or a job creates or writes: (path in the settings, what it is).
WRITTEN_PATHS = (('repository', 'path'), ('monitoring', 'metrics_directory'))


def path_problem(path: str) -> str | None:
    """Why the converge must not create or hand over ``path``, or None. The schemas already require an absolute
    path without white space or quotes."""
    parts = path.split('/')[1:]
    if path != '/' and (path.endswith('/') or '' in parts or '.' in parts or '..' in parts):
        return 'is not a normalised absolute path (no //, /./, /../ or trailing /) (rule: normalised path)'
    if path == '/' or path in SYSTEM_DIRECTORIES or any(known.startswith(path + '/') for known in SYSTEM_DIRECTORIES):
        return ('is a system directory or holds one; the converge would hand it to the request\'s user '
                '(rule: not a system directory)')
    for tree in FORBIDDEN_TREES:
        if path == tree or path.startswith(tree + '/'):
            return f'is inside {tree}, which no job may write (rule: not a system directory)'
    return None


def path_violations(path: str, settings: t.Mapping[str, t.Any]) -> list[str]:
    """The directories of one instance's settings that the converge or its jobs would create or write."""
    named: list[tuple[str, t.Any]] = []
    for section, key in WRITTEN_PATHS:
        named.append((f'{section}.{key}', (settings.get(section) or {}).get(key)))
    named += [(f'writable_paths[{index}]', value) for index, value in enumerate(settings.get('writable_paths') or [])]
    violations = []
    for field, value in named:
        problem = path_problem(value) if isinstance(value, str) else None
        if problem:
            violations.append(f'{path}.settings.{field}: {value!r} {problem}')
    return violations


def _inside(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip('/') + '/')


def nesting_violations(var: str, instances: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """A local repository inside another one (the outer one's user would own the inner's parent and could swap
    it), and a metrics directory inside a repository (its user could redirect root's writes)."""
    repositories = {name: valid['settings']['repository'].get('path') for name, valid in instances.items()}
    repositories = {name: path for name, path in repositories.items() if path}
    violations = []
    for name, path in sorted(repositories.items()):
        for other, outer in sorted(repositories.items()):
            if _inside(path, outer):
                violations.append(f'{var}.{name}.settings.repository.path: {path!r} is inside the repository of '
                                  f'instance {other!r} ({outer!r}) (rule: no nested repositories)')
        metrics = (instances[name]['settings'].get('monitoring') or {}).get('metrics_directory')
        for other, outer in sorted(repositories.items()):
            if metrics and (metrics == outer or _inside(metrics, outer)):
                violations.append(f'{var}.{name}.settings.monitoring.metrics_directory: {metrics!r} is inside the '
                                  f'repository of instance {other!r}, which its user owns (rule: root-only metrics)')
    return violations


def shared_repository_violations(var: str, instances: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """A local repository belongs to the request's user: enabled instances whose requests run as different users
    would take it from each other at every converge and lock each other out of it."""
    users_by_path: dict[str, dict[str, str]] = {}
    for name, valid in sorted(instances.items()):
        path = valid['settings']['repository'].get('path')
        if valid['settings'].get('enable', True) and path:
            users_by_path.setdefault(path, {})[name] = valid['request']['user']
    return [f'{var}: the local repository {path} is shared by instances whose requests run as different users ('
            + ', '.join(f'{name}: user {user}' for name, user in users.items())
            + '), which cannot all own it; give each user its own repository.path (rule: one user per repository)'
            for path, users in sorted(users_by_path.items()) if len(set(users.values())) > 1]


class Checked(t.NamedTuple):
    """The validated instances (defaults filled in; they hold secrets), the calendar expressions to check on the
    host (expression -> the settings paths that use it), and every violation."""

    instances: dict[str, dict[str, t.Any]]
    calendars: dict[str, list[str]]
    violations: list[str]


def unit_names(provider: str, instance: str) -> set[str]:
    """Every unit and script name an instance can own on a host: its backup job, the backup's extra jobs, its
    restore drill (enabled or not) and the drill's notification."""
    layout = _layout.Layout(provider, instance)
    jobs = [layout.job_name] + [f'{layout.job_name}-{suffix}' for suffix in JOB_SUFFIXES]
    jobs += [layout.drill_job_name, f'{layout.drill_job_name}-notify']
    return {f'{job}.{kind}' for job in jobs for kind in UNIT_TYPES} | {layout.restore_script}


def name_violations(var: str, names: t.Iterable[t.Any]) -> list[str]:
    violations = []
    for name in names:
        if not isinstance(name, str):
            violations.append(f'{var}[{name!r}]: instance name must be a string, got {type(name).__name__} (YAML reads '
                              'an unquoted 1, 1.5 or yes as a number or a boolean: quote it) (rule: type)')
        elif not _layout.INSTANCE_NAME.fullmatch(name):
            violations.append(f'{var}[{name!r}]: instance name must match {_layout.INSTANCE_NAME.pattern!r}, the '
                              'whole name (it names the units) (rule: pattern)')
    return violations


def collisions(provider: str, var: str, names: t.Iterable[str]) -> list[str]:
    """Pairs of instances that would write the same unit or script (``web`` with a check and ``web-check``)."""
    owners: dict[str, str] = {}
    shared: dict[tuple[str, str], list[str]] = {}
    for name in sorted(names):
        for unit in sorted(unit_names(provider, name)):
            other = owners.setdefault(unit, name)
            if other != name:
                shared.setdefault((other, name), []).append(unit)
    suffixes = ', '.join(f'-{suffix}' for suffix in JOB_SUFFIXES)
    return [f'{var}: instances {first!r} and {second!r} would both own {", ".join(units)}; rename one (a name '
            f'ending in {suffixes} collides with the extra jobs of another instance) (rule: unique units)'
            for (first, second), units in sorted(shared.items())]


def calendar_uses(var: str, name: str, settings: t.Mapping[str, t.Any]) -> dict[str, list[str]]:
    """Where an instance's settings use a systemd calendar expression: expression -> settings paths."""
    uses: dict[str, list[str]] = {}
    for part in ('schedule', 'check', 'drill'):
        section = settings.get(part) or {}
        if part in ('check', 'drill') and not section.get('enabled'):
            continue
        if isinstance(section.get('on_calendar'), str):
            uses.setdefault(section['on_calendar'], []).append(f'{var}.{name}.settings.{part}.on_calendar')
    return uses


def drill_violations(path: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any]) -> list[str]:
    """An enabled drill streams the dump into the request's drill_cmd: a request without one cannot have it."""
    if (settings.get('drill') or {}).get('enabled') and not request.get('drill_cmd'):
        return [f'{path}.request.drill_cmd: is required while settings.drill.enabled is true (the drill streams the '
                'dump into it); use a requester that publishes drill_cmd, or set drill.enabled: false '
                '(rule: drill needs drill_cmd)']
    return []


def check_one(provider: str, var: str, name: str, value: t.Any, host: str) -> tuple[dict[str, t.Any] | None, list[str]]:
    """One instance: its contract against the schemas, then the provider's own rules."""
    path = f'{var}.{name}'
    if not isinstance(value, t.Mapping):
        return None, [f'{path}: must be a dict with request and settings, got {type(value).__name__} (rule: type)']
    unknown = sorted(str(key) for key in value if key not in ('request', 'settings'))
    violations = [f'{path}.{key}: unknown key (rule: additionalProperties)' for key in unknown]
    request, settings = value.get('request'), value.get('settings')
    if not isinstance(request, t.Mapping):
        violations.append(f'{path}.request: is required, a dict published by a requester role; got '
                          f'{type(request).__name__} (rule: type)')
    if settings is not None and not isinstance(settings, t.Mapping):
        violations.append(f'{path}.settings: must be a dict, got {type(settings).__name__} (rule: type)')
    if violations:
        return None, violations
    try:
        valid_request = _contract.validate_request(dict(t.cast(t.Mapping[str, t.Any], request)), path)
    except _contract.ContractViolation as exc:
        violations += exc.violations
    try:
        valid_settings = _contract.validate_settings(dict(settings or {}), _contract.load_provider_schema(provider), path)
    except _contract.ContractViolation as exc:
        violations += exc.violations
    if violations:
        return None, violations
    violations = path_violations(path, valid_settings) + drill_violations(path, valid_request, valid_settings)
    if violations:
        return None, violations
    try:
        PRECHECKS[provider](name, valid_request, _servers.for_precheck(provider, valid_settings), host)
    except PROVIDER_ERRORS as exc:
        return None, [f'{path}.settings: {exc}']
    return {'request': valid_request, 'settings': valid_settings}, []


def reinitialise_violations(provider: str, var: str, reinitialise: t.Any,
                            valid: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """``<provider>_reinitialise_repositories`` may name enabled instances only: a typo there must not pass
    silently while the repository it meant stays refused."""
    option = f'{provider}_reinitialise_repositories'
    if not isinstance(reinitialise, (list, tuple)) or not all(isinstance(name, str) for name in reinitialise):
        return [f'{option}: must be a list of instance names, got {reinitialise!r} (rule: type)']
    enabled = {name for name, checked in valid.items() if checked['settings'].get('enable', True)}
    return [f'{option}: {name} is not an enabled instance of {var}' for name in reinitialise if name not in enabled]


def check(provider: str, instances: t.Any, host: str, var: str | None = None,
          reinitialise: t.Any = ()) -> Checked:
    """Every instance of ``provider`` (the role's ``<provider>_instances``) and the instances whose repositories
    the role may initialise again (``reinitialise``); nothing is raised for bad input."""
    var = var or f'{provider}_instances'
    if provider not in PRECHECKS:
        raise _contract.ContractError(f'unknown provider {provider!r} (known: {", ".join(sorted(PRECHECKS))})')
    if instances is None:
        instances = {}
    if not isinstance(instances, t.Mapping):
        return Checked({}, {}, [f'{var}: must be a dict of instance name -> {{request, settings}}, got '
                                f'{type(instances).__name__} (rule: type)'])
    violations = name_violations(var, instances)
    good_names = [name for name in instances if isinstance(name, str) and _layout.INSTANCE_NAME.fullmatch(name)]
    violations += collisions(provider, var, good_names)
    valid: dict[str, dict[str, t.Any]] = {}
    calendars: dict[str, list[str]] = {}
    for name in sorted(good_names):
        checked, problems = check_one(provider, var, name, instances[name], host)
        violations += problems
        if checked is not None:
            valid[name] = checked
            for expression, paths in calendar_uses(var, name, checked['settings']).items():
                calendars.setdefault(expression, []).extend(paths)
    violations += nesting_violations(var, valid)
    violations += shared_repository_violations(var, valid)
    if len(valid) == len(good_names) == len(instances):  # a name is only unknown once every instance is valid
        violations += reinitialise_violations(provider, var, reinitialise, valid)
    return Checked(valid, calendars, violations)
