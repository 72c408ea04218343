#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: job_paths
short_description: Create the directories and root-only secret files of backup jobs, and prune stale secrets, in one call
version_added: 0.1.0
description:
  - Manages many directories and secret files in one module call, so that a host with many backup instances
    converges in one round trip instead of one per path.
  - O(directories) are handled in the order given. An entry without O(directories[].owner),
    O(directories[].group) and O(directories[].mode) is only created when missing (with its parents, owned by
    the connecting user, with the default mode) and an existing directory is left as it is.
  - O(secret_files) are written through a temporary file in the same directory, atomically moved into place,
    and only when their content, owner, group or mode differs.
  - O(prune) removes the regular files directly in O(prune.directories) (no recursion, no hidden files, no
    symbolic links) that are neither one of O(secret_files) nor in O(prune.keep), and the directories directly in
    O(prune.subdirectories_of) that are not one of O(directories), with everything in them.
  - The content of a secret file is never returned, shown in a diff or written to a log.
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  directories:
    description:
      - Directories to create (when missing) and to give an owner, group and mode, in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description:
          - Absolute path of the directory.
        type: path
        required: true
      owner:
        description:
          - Owner (name or uid). Omitted, the owner of an existing directory stays.
        type: str
      group:
        description:
          - Group (name or gid). Omitted, the group of an existing directory stays.
        type: str
      mode:
        description:
          - Octal mode, for example V('0700'). Omitted, the mode of an existing directory stays.
        type: raw
  secret_files:
    description:
      - Files with secret content; their directory must exist (list it in O(directories)).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description:
          - Absolute path of the file.
        type: path
        required: true
        aliases: [dest]
      content:
        description:
          - The exact content of the file. It is never logged nor returned.
        type: str
        required: true
      owner:
        description:
          - Owner (name or uid).
        type: str
        default: root
      group:
        description:
          - Group (name or gid).
        type: str
        default: root
      mode:
        description:
          - Octal mode.
        type: raw
        default: '0600'
  prune:
    description:
      - Files to remove that are no longer wanted, for example a dropped secret.
    type: dict
    suboptions:
      directories:
        description:
          - Directories whose regular files are candidates for removal; a missing one is skipped.
        type: list
        elements: path
        default: []
      keep:
        description:
          - Paths of files to keep besides O(secret_files).
        type: list
        elements: path
        default: []
      subdirectories_of:
        description:
          - Directories whose subdirectories (no hidden ones, no symbolic links) are removed with everything in
            them unless they are or hold one of O(directories), O(secret_files) or O(prune.keep), for example the
            secrets directories of instances that are gone. A missing one is skipped.
          - Each must be a normalised absolute path that is not a symbolic link, neither V(/) nor a system
            directory such as V(/etc) or V(/var/lib), nor a parent of one; otherwise the module fails before any
            change.
        type: list
        elements: path
        default: []
attributes:
  check_mode:
    description: Reports what would be created, written or removed without changing anything.
    support: full
  diff_mode:
    description:
      - Shows, per path that changes, its state, owner, group and mode before and after. For a secret file it
        says whether the content changes, never the content.
    support: full
  idempotent:
    description: A second run with the same options reports no change.
    support: full
  platform:
    description: POSIX targets.
    support: full
    platforms: posix
notes:
  - Runs through an action plugin of the same name. With O(secret_files) the module runs with C(no_log) and a
    success is returned with C(no_log) (the module's invocation would show a secret holding quotes escaped); a
    failure shows its message, which names paths only. Do not set C(no_log) on the task, which would hide that
    message too.
  - When the module crashes, its failure says why. A Python exception in the module fails it with the
    exception's type and message, every secret it knows masked (also those it read from files on the host); output
    that is not JSON is kept (C(module_stdout),
    C(module_stderr), C(rc)). Every value of O(secret_files[].content) is masked there,
    also JSON-escaped, in a Python repr or shell-quoted.
  - Run it as root to create files owned by other users.
seealso:
  - module: selfhost.backup.backup_jobs
  - module: ansible.builtin.file
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: Create the repository and the secrets of instance app, and drop its stale secrets
  selfhost.backup.job_paths:
    directories:
      # created root-owned when missing, otherwise left alone
      - path: /srv/backup
      - path: /srv/backup/app
        owner: postgres
        mode: '0700'
      - path: /etc/selfhost-backup/restic/app
        owner: root
        group: root
        mode: '0700'
    secret_files:
      - path: /etc/selfhost-backup/restic/app/passphrase
        content: "{{ vault_app_passphrase }}"
    prune:
      directories: [/etc/selfhost-backup/restic/app]
      keep: [/etc/selfhost-backup/restic/app/ssh_key]
      # the secrets of every other restic instance go
      subdirectories_of: [/etc/selfhost-backup/restic]
"""

RETURN = r"""
directories:
  description: The directories created or whose owner, group or mode was set (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/srv/backup/app]
secret_files:
  description: The paths of the secret files written or fixed (or that would be); never their content.
  returned: always
  type: list
  elements: str
  sample: [/etc/selfhost-backup/restic/app/passphrase]
removed:
  description: The files and directories removed by O(prune) (or that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/selfhost-backup/restic/app/env.AWS_SECRET_ACCESS_KEY]
diff:
  description: Per path that changes, its state, owner, group and mode before and after; no content.
  returned: when diff mode is enabled
  type: list
  elements: dict
  contains:
    before_header:
      description: The path.
      type: str
    after_header:
      description: The path.
      type: str
    before:
      description: State, owner, group and mode before.
      type: str
    after:
      description: State, owner, group and mode after.
      type: str
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfhost.backup.plugins.module_utils import _crash
from ansible_collections.selfhost.backup.plugins.module_utils import _job_paths as paths

ARGUMENT_SPEC = {
    'directories': {'type': 'list', 'elements': 'dict', 'default': [], 'options': {
        'path': {'type': 'path', 'required': True},
        'owner': {'type': 'str'},
        'group': {'type': 'str'},
        'mode': {'type': 'raw'},
    }},
    # The list holds paths too; its secret part is the content, no_log itself.
    'secret_files': {'type': 'list', 'elements': 'dict', 'default': [], 'no_log': False, 'options': {
        'path': {'type': 'path', 'required': True, 'aliases': ['dest']},
        'content': {'type': 'str', 'required': True, 'no_log': True},
        'owner': {'type': 'str', 'default': 'root'},
        'group': {'type': 'str', 'default': 'root'},
        'mode': {'type': 'raw', 'default': '0600'},
    }},
    'prune': {'type': 'dict', 'options': {
        'directories': {'type': 'list', 'elements': 'path', 'default': []},
        'keep': {'type': 'list', 'elements': 'path', 'default': [], 'no_log': False},
        'subdirectories_of': {'type': 'list', 'elements': 'path', 'default': []},
    }},
}


def build_plan(params: dict[str, t.Any]) -> paths.PathChanges:
    directories = [paths.Directory(item['path'], paths.attributes(item)) for item in params['directories']]
    secrets = [paths.SecretFile(item['path'], item['content'], paths.attributes(item)) for item in params['secret_files']]
    prune = params['prune'] or {'directories': [], 'keep': [], 'subdirectories_of': []}
    return paths.plan(directories, secrets, prune['directories'], prune['keep'], prune['subdirectories_of'])


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    with _crash.reported(module) as progress:
        try:
            the_plan = build_plan(module.params)
            result = summary(the_plan, module._diff)
            if the_plan.changed and not module.check_mode:
                progress.changed = True
                paths.apply(module, the_plan)
        except (paths.JobPathsError, OSError) as exc:
            # Once applying started, some paths may already have changed.
            module.fail_json(msg=str(exc), changed=progress.changed)
        module.exit_json(**result)


def summary(the_plan: paths.PathChanges, with_diff: bool) -> dict[str, t.Any]:
    """The result: paths only. The diff is taken before applying, while the old state is still there."""
    result: dict[str, t.Any] = {
        'changed': the_plan.changed,
        'directories': list(dict.fromkeys(directory.path for directory, dummy in the_plan.directories)),
        'secret_files': [secret.path for secret, dummy, dummy2 in the_plan.secrets],
        'removed': list(the_plan.removals) + list(the_plan.tree_removals),
    }
    if with_diff:
        result['diff'] = paths.diffs(the_plan)
    return result


if __name__ == '__main__':
    main()
