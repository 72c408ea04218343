#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: restic_repository
short_description: Initialise restic repositories that do not exist yet, each as a given user
version_added: 0.1.0
description:
  - Probes each repository with C(restic cat config) and runs C(restic init) only when it is missing.
  - A local repository (C(RESTIC_REPOSITORY) an absolute path or C(local:<absolute path>)) that an earlier run
    opened with the same passphrase is trusted without running restic, which saves restic's key derivation
    (about half a second) per repository. O(state_file) records a fingerprint of the repository's path, its
    C(config) file, the passphrase and the user; a changed passphrase or user, or another repository under that
    path, is probed again. Remote repositories are always probed.
  - One repository is given by O(password_file) and its sibling options, several by O(repositories); one call
    handles them all in order.
  - restic runs as the repository's user (through C(setpriv)), so a local repository and its lock files belong
    to that user.
  - Secrets are read from files on the host by the module. The passphrase reaches restic on its standard input,
    the repository and backend secrets as environment variables; none of them is ever on a command line or
    returned.
  - A wrong passphrase or an unreachable repository is an error, never a reason to initialise.
  - A repository this host has seen before (opened or initialised, recorded in O(state_file)) that is missing now
    is an error too, never initialised again in its place; a wiped or unmounted volume, or a server that lost
    the repository, would otherwise start an empty history silently. O(repositories[].reinitialise) allows it
    for one converge.
  - With O(init=false) nothing is initialised; each repository is only checked, with the secrets given in
    O(repositories[].passphrase) and O(repositories[].environment) instead of the files, so that the role checks
    new secrets against an existing repository before it writes them.
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  password_file:
    description:
      - Absolute path of the file holding the repository passphrase (readable by root).
      - Required unless O(repositories) is given; mutually exclusive with it.
    type: path
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
  cacert:
    description:
      - Path of a PEM file of the CA certificates restic trusts for an https repository (C(restic --cacert)),
        instead of the system's. A server certificate it does not trust fails the check with a message naming TLS.
    type: path
  repositories:
    description:
      - Several repositories, each with the options of a single one. Mutually exclusive with O(password_file).
    type: list
    elements: dict
    suboptions:
      password_file:
        description:
          - As O(password_file).
        type: path
        required: true
      environment_files:
        description:
          - As O(environment_files).
        type: dict
        default: {}
      repository:
        description:
          - As O(repository).
        type: str
      user:
        description:
          - As O(user).
        type: str
        default: root
      name:
        description:
          - The instance (key of C(restic_instances)) that messages name instead of the password file.
        type: str
      passphrase:
        description:
          - The passphrase itself, used instead of the content of O(repositories[].password_file) (which may not
            exist yet). Never logged.
        type: str
      environment:
        description:
          - The environment variables themselves, name to value, used instead of O(repositories[].environment_files)
            (with C(RESTIC_REPOSITORY) unless O(repositories[].repository) is given). Never logged.
        type: dict
      reinitialise:
        description:
          - Initialise this repository even when this host has seen it before and it is missing now (a new, empty
            repository in its place). The role sets it for the instances in C(restic_reinitialise_repositories).
        type: bool
        default: false
      cacert:
        description:
          - As O(cacert).
        type: path
  pending_authorization:
    description:
      - The instances (O(repositories[].name)) whose backup server does not accept this host's password yet and
        would learn it in this run. In check mode that did not happen, and the server would refuse the password, so
        their repositories are not asked (RV(repositories[].state=unknown), no change). Outside check mode ignored.
        The restic role gives the instances on the servers it would register this host on.
    type: list
    elements: str
    default: []
  init:
    description:
      - Initialise the repositories that do not exist yet. With V(false) they are only checked (see the
        description); the result tells each one's RV(repositories[].state).
    type: bool
    default: true
  restic:
    description:
      - Path of the restic binary.
    type: path
    default: /usr/bin/restic
  state_file:
    default: /var/lib/selfhost-backup/restic-repositories.json
extends_documentation_fragment:
  - selfhost.backup.repository_check
attributes:
  check_mode:
    description: Probes, and reports a change when a repository would be initialised.
    support: full
    details:
      - When the secret files of a repository or restic itself do not exist yet (a first run in check mode), it
        reports a change for it without probing (RV(repositories[].state=unknown)).
      - The repositories of the instances in O(pending_authorization) are not probed either, and report no change
        (RV(repositories[].state=unknown)).
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
notes:
  - Runs through an action plugin of the same name. With O(init=false) (the check with new secrets) the module
    runs with C(no_log) and a success is returned with C(no_log); a failure shows its message (secrets masked)
    followed by the sentence that nothing on the host was changed. Do not set C(no_log) on the task, which would
    hide that message too.
  - When the module crashes, its failure says why. A Python exception in the module fails it with the
    exception's type and message, every secret it knows masked (also those it read from files on the host); output
    that is not JSON is kept (C(module_stdout),
    C(module_stderr), C(rc)). Every value of O(repositories[].passphrase) and
    O(repositories[].environment) is masked there, also JSON-escaped, in a Python repr or shell-quoted.
  - A wrong passphrase is still found here whenever it changes, since a new passphrase does not match the
    recorded fingerprint and the repository is opened again.
  - Remote repositories are recorded as seen by a hash of their location without credentials.
seealso:
  - module: selfhost.backup.backup_jobs
"""

EXAMPLES = r"""
- name: Initialise the repository of instance app as postgres
  selfhost.backup.restic_repository:
    user: postgres
    password_file: /etc/selfhost-backup/restic/app/passphrase
    environment_files:
      RESTIC_REPOSITORY: /etc/selfhost-backup/restic/app/env.RESTIC_REPOSITORY

- name: Initialise the repositories of two instances in one call
  selfhost.backup.restic_repository:
    repositories:
      - user: postgres
        password_file: /etc/selfhost-backup/restic/app/passphrase
        repository: /srv/backup/app
      - user: mysql
        password_file: /etc/selfhost-backup/restic/shop/passphrase
        environment_files:
          RESTIC_REPOSITORY: /etc/selfhost-backup/restic/shop/env.RESTIC_REPOSITORY
          AWS_SECRET_ACCESS_KEY: /etc/selfhost-backup/restic/shop/env.AWS_SECRET_ACCESS_KEY

# Before the new passphrase replaces the stored one: does it open the repository, if there is one?
- name: Check the new passphrase of instance app against its repository
  selfhost.backup.restic_repository:
    init: false
    repositories:
      - name: app
        user: postgres
        password_file: /etc/selfhost-backup/restic/app/passphrase
        passphrase: "{{ vault_restic_app }}"
        environment:
          RESTIC_REPOSITORY: /srv/backup/app
"""

RETURN = r"""
initialized:
  description:
    - Whether the repository was (or, in check mode, would be) initialised.
    - With O(repositories), whether any of them was.
  returned: success
  type: bool
  sample: true
state:
  description:
    - Without O(repositories), what the probe found, as RV(repositories[].state).
  returned: success, without O(repositories)
  type: str
  sample: present
repositories:
  description: With O(repositories), one result per repository, in the order given.
  returned: success, with O(repositories)
  type: list
  elements: dict
  contains:
    name:
      description: The repository's O(repositories[].name), or an empty string.
      type: str
    password_file:
      description: The repository's O(repositories[].password_file), which names it without a secret.
      type: str
    state:
      description:
        - What the probe found before anything was done, V(present) or V(absent); V(unknown) in check mode when
          restic or the secret files are not there yet, or for an instance in O(pending_authorization).
      type: str
    user:
      description: The user restic ran as.
      type: str
    changed:
      description: Whether this repository was (or would be) initialised.
      type: bool
    initialized:
      description: Same as RV(repositories[].changed).
      type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfhost.backup.plugins.module_utils import _crash
from ansible_collections.selfhost.backup.plugins.module_utils import _restic
from ansible_collections.selfhost.backup.plugins.module_utils import _restic_repository as repositories

REPOSITORY_SPEC = {
    'password_file': {'type': 'path', 'required': True, 'no_log': False},
    'environment_files': {'type': 'dict', 'default': {}},
    'repository': {'type': 'str'},
    'user': {'type': 'str', 'default': 'root'},
    'name': {'type': 'str'},
    'passphrase': {'type': 'str', 'no_log': True},
    'environment': {'type': 'dict', 'no_log': True},
    'reinitialise': {'type': 'bool', 'default': False},
    'cacert': {'type': 'path'},
}

ARGUMENT_SPEC = {
    'password_file': {'type': 'path', 'no_log': False},
    'environment_files': {'type': 'dict', 'default': {}},
    'repository': {'type': 'str'},
    'user': {'type': 'str', 'default': 'root'},
    'cacert': {'type': 'path'},
    'repositories': {'type': 'list', 'elements': 'dict', 'options': REPOSITORY_SPEC},
    'pending_authorization': {'type': 'list', 'elements': 'str', 'default': []},
    'init': {'type': 'bool', 'default': True},
    'restic': {'type': 'path', 'default': _restic.DEFAULT_BINARY},
    'timeout': {'type': 'int', 'default': 120},
    'jobs': {'type': 'int'},
    'state_file': {'type': 'path', 'default': '/var/lib/selfhost-backup/restic-repositories.json'},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        # environment_files and user have defaults, so only the options without one can be exclusive.
        mutually_exclusive=[('password_file', 'repositories'), ('repository', 'repositories')],
        required_one_of=[('password_file', 'repositories')],
        supports_check_mode=True,
    )
    with _crash.reported(module):
        run(module)


def run(module: AnsibleModule) -> None:
    params = module.params
    opened = repositories.Opened(params['state_file'])
    if params['repositories'] is None:
        try:
            result = repositories.ensure(module, params, opened)
            opened.save(module)
        except (_restic.ResticError, OSError) as exc:
            module.fail_json(msg=str(exc))
        module.exit_json(**result)
    try:
        results, changed = repositories.ensure_all(module, params['repositories'], opened)
    except repositories.RepositoriesError as exc:
        try:
            opened.save(module)  # what the other repositories showed still counts
        except OSError:
            pass
        module.fail_json(msg=str(exc), changed=exc.changed)
    try:
        opened.save(module)
    except OSError as exc:
        module.fail_json(msg=f'cannot record the opened repositories in {opened.path}: {exc.strerror}', changed=changed)
    module.exit_json(changed=changed, initialized=changed, repositories=results)


if __name__ == '__main__':
    main()
