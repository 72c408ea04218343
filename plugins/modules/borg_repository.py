#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: borg_repository
short_description: Check borg repositories against new settings before anything of their jobs is replaced
version_added: 0.1.0
description:
  - Used by the C(selfhost.backup.borg) role before it writes secrets, units or scripts. It initialises nothing;
    the borg jobs initialise their repository at their first backup and record it in a marker file.
  - A repository that exists must open with the passphrase given (C(borg list) as the repository's user, the
    passphrase on standard input through C(BORG_PASSPHRASE_FD), without a lock). A wrong passphrase fails, so
    the role never replaces a working passphrase with one that cannot open the repository.
  - A repository that the instance's job initialised before (its O(repositories[].marker) names it) and that is
    missing now fails, naming the instance (a wiped or unmounted volume, or a server that lost the repository).
    With O(repositories[].reinitialise) the marker is removed instead, so that the next backup initialises a
    new, empty repository.
  - A local repository exists when its C(config) file does. One opened before with the same passphrase is
    trusted without running borg (a fingerprint of path, C(config), passphrase and user in O(state_file)).
  - A remote (SSH) repository is asked with the job's key and the given pinned host keys, in a private
    temporary directory the user owns, removed afterwards; only once the job has initialised it, since before
    the server may not know the job's key.
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  repositories:
    description:
      - The repositories, one per instance, checked in order; every failing one is named in the message.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The instance (key of C(borg_instances)); messages name it.
        type: str
        required: true
      user:
        description:
          - Unix user that runs borg and owns a local repository.
        type: str
        default: root
      repository:
        description:
          - The repository, a local path or C(ssh://user@host[:port]/path), as the job's C(BORG_REPO).
        type: str
        required: true
      marker:
        description:
          - The job's marker file (in its C(BORG_BASE_DIR)) that names the repository once the job initialised it.
        type: path
        required: true
      passphrase:
        description:
          - The passphrase to check. Never logged. Without it, the content of O(repositories[].password_file).
        type: str
      password_file:
        description:
          - Root-only file holding the passphrase, read when O(repositories[].passphrase) is not given.
        type: path
      ssh_key:
        description:
          - The job's private SSH key (a remote repository).
        type: path
      known_hosts:
        description:
          - The server's pinned host key lines (a remote repository).
        type: str
      reinitialise:
        description:
          - When the repository is missing although the job initialised it before, remove the marker (the next
            backup initialises a new, empty repository) instead of failing. The role sets it for the instances
            in C(borg_reinitialise_repositories).
        type: bool
        default: false
  pending_authorization:
    description:
      - The instances (O(repositories[].name)) whose job key is being authorized on their backup server in this
        run. In check mode that did not happen, and the server would refuse the key - their check is V(unknown).
        Outside check mode ignored. The borg role gives the instances whose C(authorized_keys) line it would add.
    type: list
    elements: str
    default: []
  borg:
    description:
      - Path of the borg binary.
    type: path
    default: /usr/bin/borg
  state_file:
    default: /var/lib/selfhost-backup/borg-repositories.json
extends_documentation_fragment:
  - selfhost.backup.repository_check
attributes:
  check_mode:
    description: Checks as in a normal run; a marker that would be removed is reported as a change.
    support: full
    details:
      - When borg or a passphrase file is not on the host yet (a first run in check mode), nothing is checked;
        nor for the instances in O(pending_authorization).
  diff_mode:
    description: Nothing to diff.
    support: none
  idempotent:
    description: Only the reinitialise escape hatch changes something, once.
    support: full
  platform:
    description: Linux with borg >= 1.2, C(setpriv) (util-linux) and, for remote repositories, ssh.
    support: full
    platforms: posix
notes:
  - Runs through an action plugin of the same name; the module runs with C(no_log) and a success is returned
    with C(no_log); a failure shows its message (passphrases masked) followed by the sentence that nothing on the
    host was changed. Do not set C(no_log) on the task, which would hide that message too.
  - When the module crashes, its failure says why. A Python exception in the module fails it with the
    exception's type and message, every secret it knows masked (also those it read from files on the host); output
    that is not JSON is kept (C(module_stdout),
    C(module_stderr), C(rc)). Every value of O(repositories[].passphrase) is masked there,
    also JSON-escaped, in a Python repr or shell-quoted.
seealso:
  - module: selfhost.backup.restic_repository
"""

EXAMPLES = r"""
- name: Check the new passphrase of instance app against its repository, before it is written
  selfhost.backup.borg_repository:
    repositories:
      - name: app
        user: postgres
        repository: /srv/backup/app
        marker: /var/cache/borg-backup-app/selfhost-backup-initialised
        passphrase: "{{ vault_borg_app }}"
"""

RETURN = r"""
repositories:
  description: One result per repository, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The instance.
      type: str
    state:
      description:
        - V(present) (opened with the passphrase), V(absent) (not created yet, or just forgotten with
          O(repositories[].reinitialise)), V(unchecked) (a remote repository the job has not initialised yet) or
          V(unknown) (check mode before borg or the passphrase file is on the host, or an instance in
          O(pending_authorization)).
      type: str
    changed:
      description: Whether the marker was (or would be) removed.
      type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfhost.backup.plugins.module_utils import _borg
from ansible_collections.selfhost.backup.plugins.module_utils import _borg_repository as repositories
from ansible_collections.selfhost.backup.plugins.module_utils import _crash
from ansible_collections.selfhost.backup.plugins.module_utils._restic_repository import Opened

REPOSITORY_SPEC = {
    'name': {'type': 'str', 'required': True},
    'user': {'type': 'str', 'default': 'root'},
    'repository': {'type': 'str', 'required': True},
    'marker': {'type': 'path', 'required': True},
    'passphrase': {'type': 'str', 'no_log': True},
    'password_file': {'type': 'path', 'no_log': False},
    'ssh_key': {'type': 'path', 'no_log': False},
    'known_hosts': {'type': 'str'},
    'reinitialise': {'type': 'bool', 'default': False},
}

ARGUMENT_SPEC = {
    'repositories': {'type': 'list', 'elements': 'dict', 'required': True, 'options': REPOSITORY_SPEC},
    'pending_authorization': {'type': 'list', 'elements': 'str', 'default': []},
    'borg': {'type': 'path', 'default': _borg.DEFAULT_BINARY},
    'timeout': {'type': 'int', 'default': 120},
    'jobs': {'type': 'int'},
    'state_file': {'type': 'path', 'default': '/var/lib/selfhost-backup/borg-repositories.json'},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    with _crash.reported(module):
        run(module)


def run(module: AnsibleModule) -> None:
    opened = Opened(module.params['state_file'])
    results, changed, errors = repositories.check_all(module, module.params['repositories'], opened)
    try:
        opened.save(module)
    except OSError as exc:
        errors.append(f'cannot record the opened repositories in {opened.path}: {exc.strerror}')
    if errors:
        module.fail_json(msg='\n'.join(errors), changed=changed, repositories=results)
    module.exit_json(changed=changed, repositories=results)


if __name__ == '__main__':
    main()
