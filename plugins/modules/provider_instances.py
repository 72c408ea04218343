#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: provider_instances
short_description: Check every instance of a backup provider before any change
version_added: 0.1.0
description:
  - Checks the instances dict of a provider role (C(restic_instances), C(borg_instances)) as a whole, on the
    Ansible controller; only with O(check_host) does it read the host too (see below).
  - Every instance name must be a string matching C(^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$) as a whole (a trailing
    newline does not pass), and no two instances may own the same unit or restore script (C(web) with its check
    job C(web-check) next to an instance called C(web-check)).
  - Each instance's C(request) and C(settings) are validated against the contract's JSON Schemas, as
    M(selfhost.backup.databasebackup_contract) does; integers must be integers (V(7.0) is refused).
  - Then the provider's own rules that no tool version changes, for example secret environment variable names
    that the shell or the job script own (C(PATH), C(UID), C(RESTIC_PASSWORD_FILE)), or a borg remote repository
    without a pinned host key of its server.
  - Every violation is reported at once, one per line, naming the field and the rule. Secrets are never quoted.
  - With O(check_host), two reads on the host follow once the instances are valid; they change nothing. The
    calendar expressions must be read by the host's own systemd (C(systemd-analyze calendar)), whose versions
    differ. And an empty instances dict fails while the host has instances of this provider installed (a job
    manifest in C(/var/lib/selfhost-backup) or a secrets directory in C(/etc/selfhost-backup/<provider>)),
    unless O(remove_unlisted), so that a misspelt variable name never uninstalls every job.
requirements:
  - jsonschema >= 4.18 on the controller
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  provider:
    description: The provider whose instances these are.
    type: str
    required: true
    choices: [borg, restic]
  instances:
    description:
      - The provider role's instances dict, name -> C({request, settings}). V(null) counts as an empty dict.
    type: raw
    required: true
  host:
    description:
      - The host name the jobs record in their snapshots when the settings do not set C(host).
      - Defaults to the inventory hostname.
    type: str
  name:
    description: Prefix of the paths in violation messages. Defaults to C(<provider>_instances).
    type: str
  reinitialise:
    description:
      - The role's C(<provider>_reinitialise_repositories), the instances whose vanished repositories may be
        initialised again. Each must be an enabled instance of O(instances); a name that is not is a violation.
    type: raw
    default: []
  check_host:
    description:
      - Also check the calendars with the host's systemd and refuse an empty O(instances) on a host with
        installed instances (see above). Without it nothing runs on the host.
    type: bool
    default: false
  remove_unlisted:
    description:
      - The role's C(<provider>_remove_unlisted); with it an empty O(instances) may remove the installed instances.
    type: raw
    default: false
extends_documentation_fragment:
  - selfhost.backup.controller_only
attributes:
  action:
    description:
      - Runs as an action plugin on the controller. With O(check_host) it also runs, from there, a command
        (C(systemd-analyze calendar)) and, for an empty O(instances), the module M(ansible.builtin.find) on the host.
  check_mode:
    description: It changes nothing (with O(check_host) it only reads the host), so it runs the same in check mode.
  platform:
    description:
      - Without O(check_host) nothing runs on the host, whose platform does not matter.
      - With O(check_host) the host needs systemd (C(systemd-analyze)) and, for an empty O(instances), Python for
        M(ansible.builtin.find).
    platforms: posix
notes:
  - The returned instances hold the secrets of the settings, so a success is returned with C(no_log); a failure
    shows its message (every violation, one per line), which never quotes a secret. Do not set C(no_log) on the
    task, which would hide that message too.
  - With O(check_host) it reads the host (a connection is made), in check mode too; without it nothing runs on
    the host.
seealso:
  - module: selfhost.backup.databasebackup_contract
"""

EXAMPLES = r"""
- name: Check the restic instances before any host task
  selfhost.backup.provider_instances:
    provider: restic
    instances: "{{ restic_instances }}"
    check_host: true
  register: __restic_checked
"""

RETURN = r"""
instances:
  description: The valid instances, each C({request, settings}) with aliases renamed and defaults filled in.
  returned: always
  type: dict
calendars:
  description:
    - Every systemd calendar expression the valid instances use, with the settings paths that use it, to check
      on the host (C(systemd-analyze calendar)) before anything changes there.
  returned: always
  type: dict
  sample:
    daily: [restic_instances.app.settings.schedule.on_calendar]
violations:
  description: >-
    Every violation, as C(<path>: <message> (rule: <rule>)); empty when all instances are valid.
  returned: always
  type: list
  elements: str
  sample:
    - "restic_instances.app.settings.retention.keep_daily: 7.0 is not of type 'integer' (rule: type)"
"""
