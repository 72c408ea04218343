#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: restic_repository
short_description: Initialise a restic repository when it does not exist yet, as a given user
version_added: 0.1.0
description:
  - Probes the repository with C(restic cat config) and runs C(restic init) only when it is missing.
  - restic runs as O(user) (through C(setpriv)), so a local repository and its lock files belong to that user.
  - Secrets are read from files on the host by the module. The passphrase reaches restic on its standard input,
    the repository and backend secrets as environment variables; none of them is ever on a command line or
    returned.
  - A wrong passphrase or an unreachable repository is an error, never a reason to initialise.
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  password_file:
    description:
      - Absolute path of the file holding the repository passphrase (readable by root).
    type: path
    required: true
  environment_files:
    description:
      - Environment variables of restic read from files, name to absolute path, for example
        C(RESTIC_REPOSITORY), C(AWS_SECRET_ACCESS_KEY), C(RESTIC_REST_PASSWORD).
      - C(RESTIC_REPOSITORY) must be given here or in O(repository).
    type: dict
    default: {}
  repository:
    description:
      - The repository, when it is no secret (a local path). Overrides C(RESTIC_REPOSITORY) of O(environment_files).
    type: str
  user:
    description:
      - Unix user that runs restic and owns a local repository.
    type: str
    default: root
  restic:
    description:
      - Path of the restic binary.
    type: path
    default: /usr/bin/restic
  timeout:
    description:
      - Seconds each restic call may take (C(timeout) of coreutils); recent restic retries an unreachable
        backend for many minutes.
    type: int
    default: 120
attributes:
  check_mode:
    description: Probes, and reports a change when the repository would be initialised.
    support: full
    details:
      - When the secret files do not exist yet (a first run in check mode), it reports a change without probing.
  diff_mode:
    description: Nothing to diff.
    support: none
  idempotent:
    description: An existing repository is left alone.
    support: full
  platform:
    description: Linux with restic and C(setpriv) (util-linux).
    support: full
    platforms: posix
seealso:
  - module: selfhost.backup.backup_timer
"""

EXAMPLES = r"""
- name: Initialise the repository of instance app as postgres
  selfhost.backup.restic_repository:
    user: postgres
    password_file: /etc/selfhost-backup/restic/app/passphrase
    environment_files:
      RESTIC_REPOSITORY: /etc/selfhost-backup/restic/app/env.RESTIC_REPOSITORY
"""

RETURN = r"""
initialized:
  description: Whether the repository was (or, in check mode, would be) initialised.
  returned: success
  type: bool
  sample: true
"""

import os
import pwd
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfhost.backup.plugins.module_utils import _restic

ARGUMENT_SPEC = {
    'password_file': {'type': 'path', 'required': True, 'no_log': False},
    'environment_files': {'type': 'dict', 'default': {}},
    'repository': {'type': 'str'},
    'user': {'type': 'str', 'default': 'root'},
    'restic': {'type': 'path', 'default': _restic.DEFAULT_BINARY},
    'timeout': {'type': 'int', 'default': 120},
}


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read().rstrip('\n')
    except OSError as exc:
        raise _restic.ResticError(f'cannot read {what} from {path}: {exc.strerror}') from exc


class Repository:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        self.password = _read(params['password_file'], 'the passphrase')
        self.environ = {name: _read(path, name) for name, path in sorted(params['environment_files'].items())}
        if params['repository']:
            self.environ['RESTIC_REPOSITORY'] = params['repository']
        if 'RESTIC_REPOSITORY' not in self.environ:
            raise _restic.ResticError('give repository or environment_files.RESTIC_REPOSITORY')
        # Whatever restic prints (a URL with credentials in an error), Ansible masks these values in the result.
        module.no_log_values.update(value for value in [self.password] + list(self.environ.values()) if value)
        self.environ.update({'LC_ALL': 'C', 'RESTIC_PASSWORD_FILE': '', 'RESTIC_PASSWORD_COMMAND': ''})
        self.prefix = self._as_user(params['user'])

    @staticmethod
    def _as_user(user: str) -> list[str]:
        try:
            entry = pwd.getpwnam(user)
        except KeyError as exc:
            raise _restic.ResticError(f'the user {user!r} does not exist') from exc
        if entry.pw_uid == os.geteuid():
            return []
        return ['setpriv', f'--reuid={entry.pw_uid}', f'--regid={entry.pw_gid}', '--init-groups', '--']

    def run(self, args: list[str]) -> tuple[int, str, str]:
        # The passphrase goes to stdin: restic reads it from there when stdin is not a terminal.
        argv = ['timeout', str(self.module.params['timeout'])] + self.prefix
        argv += [self.module.params['restic'], '--no-cache', '--quiet'] + args
        return self.module.run_command(argv, data=self.password, environ_update=self.environ, cwd='/')

    def ensure(self) -> dict[str, t.Any]:
        rc, dummy, err = self.run(_restic.probe_args())
        if _restic.probe_state(rc, err) == 'present':
            return {'changed': False, 'initialized': False}
        if not self.module.check_mode:
            rc, out, err = self.run(_restic.init_args())
            if rc != 0:
                raise _restic.ResticError(f'restic init failed (rc={rc}): {(err or out).strip()}')
        return {'changed': True, 'initialized': True}


def _secret_files_missing(params: dict[str, t.Any]) -> bool:
    return not all(os.path.exists(path) for path in [params['password_file']] + list(params['environment_files'].values()))


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.check_mode and _secret_files_missing(module.params):
        # A first run in check mode: the role has not written the secrets yet, so the repository would be set up.
        module.exit_json(changed=True, initialized=True)
    try:
        result = Repository(module).ensure()
    except _restic.ResticError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
