#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: provider_plan
short_description: Plan every host step of a backup provider on the controller
version_added: 0.1.0
description:
  - Turns the instances that M(selfhost.backup.provider_instances) validated into everything the provider role's
    host steps need, on the Ansible controller only, in one step; the host modules then only carry it out.
  - Per instance, the job (the options of M(selfhost.backup.backup_jobs), with the data of its restore script)
    and its secret files; for all of them, the directories and secret files of M(selfhost.backup.job_paths), the
    repository checks and initialisations, the SSH keys to generate (borg), and the contract results.
  - The command lines follow the installed version of the tool (O(version)).
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  provider:
    description: The provider whose instances these are.
    type: str
    required: true
    choices: [borg, restic]
  instances:
    description: The validated instances, RV(selfhost.backup.provider_instances#module:instances).
    type: dict
    required: true
  version:
    description:
      - The output of C(restic version) or C(borg --version) on the host.
      - Empty where the tool is not installed yet (check mode on a fresh host); the oldest command lines are
        planned then.
    type: str
    default: ''
  binary:
    description: The path of the tool on the host. Defaults to the distribution's.
    type: str
  host:
    description:
      - The host name the jobs record in their snapshots when the settings do not set C(host).
      - Defaults to the inventory hostname.
    type: str
  reinitialise:
    description: Instances whose vanished repository may be initialised again.
    type: list
    elements: str
    default: []
  servers:
    description:
      - The backup servers (hosts of the role C(selfhost.backup.backup_server)) the instances' C(repository.server) name, by
        inventory hostname. Each holds C(address) and the server's C(backup_server_*) variables without the prefix
        (C(restic_port), C(restic_tls), C(restic_directory), C(borg_user), C(borg_port), C(borg_directory),
        C(borg_storage_quota)), this client's rest-server password C(restic_password) and the server's SSH host key
        C(host_key).
      - An instance with a server repository gets the server's URL and no retention of its own (the server applies
        it); RV(server_registrations) says what the server needs.
    type: dict
    default: {}
extends_documentation_fragment:
  - selfhost.backup.controller_only
notes:
  - The result holds secrets (RV(secret_files), RV(repository_checks)), so a success is returned with C(no_log);
    a failure shows its message, which never quotes a secret. Do not set C(no_log) on the task, which would hide
    that message too.
seealso:
  - module: selfhost.backup.provider_instances
  - module: selfhost.backup.backup_jobs
  - module: selfhost.backup.job_paths
"""

EXAMPLES = r"""
- name: Plan the restic jobs
  selfhost.backup.provider_plan:
    provider: restic
    instances: "{{ __restic_checked.instances }}"
    version: "{{ __restic_version.stdout }}"
  register: __restic_plan

- name: Install the backup services, timers and restore scripts
  selfhost.backup.backup_jobs:
    jobs: "{{ __restic_plan.backup_jobs.jobs }}"
    prune: "{{ __restic_plan.backup_jobs.prune }}"
"""

RETURN = r"""
instances:
  description: The names of every listed instance, enabled or not.
  returned: success
  type: list
  elements: str
enabled:
  description: The enabled instances.
  returned: success
  type: list
  elements: str
disabled:
  description: The disabled instances (C(settings.enable=false)), to uninstall.
  returned: success
  type: list
  elements: str
users:
  description: The users the enabled instances' requests run as.
  returned: success
  type: list
  elements: str
pings:
  description: Whether an enabled instance pings a monitor (curl is needed).
  returned: success
  type: bool
job_paths:
  description: The O(selfhost.backup.job_paths#module:directories) and O(selfhost.backup.job_paths#module:prune) options.
  returned: success
  type: dict
gone_secrets:
  description:
    - The O(selfhost.backup.job_paths#module:directories) (the enabled instances' secrets directories, paths only) and
      O(selfhost.backup.job_paths#module:prune) options of the call after the jobs that removes the secrets directories
      of every other instance of this provider. No secret.
  returned: success
  type: dict
secret_files:
  description: The secret files of the enabled instances, C({dest, content}). Secret.
  returned: success
  type: list
  elements: dict
backup_jobs:
  description:
    - The O(selfhost.backup.backup_jobs#module:jobs) option for the enabled instances, and the
      O(selfhost.backup.backup_jobs#module:prune) prefix that removes every other installed job of this provider.
  returned: success
  type: dict
  contains:
    jobs:
      description: One job per enabled instance.
      type: list
      elements: dict
    prune:
      description: The name prefixes of this provider's jobs, for example V([restic-backup-]).
      type: list
      elements: str
results:
  description: The contract results of the enabled instances, C({backup_service, restore_script}) by name.
  returned: success
  type: dict
repository_checks:
  description:
    - The options of the repository check (restic_repository with C(init=false), borg_repository) with the secrets
      about to be written. Secret.
  returned: success
  type: list
  elements: dict
repositories:
  description: restic - the repositories to initialise where the check found none (paths, no secret).
  returned: success
  type: list
  elements: dict
ssh_keys:
  description: borg - the SSH keys to generate for remote repositories, C({name, path, comment, serve_path}).
  returned: success
  type: list
  elements: dict
server_registrations:
  description:
    - What each enabled instance with a server repository needs on its backup server - C(server), C(provider),
      C(client), C(instance), C(repository) and its C(parent) on the server's disk, its C(owner) there, the path of
      the server's root-only C(credential), the maintenance data file (C(data_path), C(data)), the client's
      C(client_password_file), and for borg C(ssh_key) and C(authorized_keys_options).
  returned: success
  type: list
  elements: dict
"""
