#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: databasebackup_contract
short_description: Validate a database backup contract request and provider settings on the controller
version_added: 0.1.0
description:
  - Validates the C(request) part of the database backup contract, and optionally the C(settings) of a provider,
    against the JSON Schemas (draft 2020-12) shipped in this collection.
  - Runs only on the Ansible controller and never contacts the host, so a wrong request stops the play before any
    host is touched.
  - The seed contract's camelCase keys (C(backupCmd), C(backupName), C(restoreCmd)) are accepted and renamed to
    snake_case. Giving both spellings of one key is a violation.
  - Missing keys are filled from the C(default) keywords of the schema.
  - >-
    On failure every violation is reported at once, one per line, as C(<path>: <message> (rule: <keyword>)), for
    example C(request.backup_name: '../x' does not match '^[A-Za-z0-9_][A-Za-z0-9._-]*$' (rule: pattern)).
  - The request schema is C(plugins/plugin_utils/schemas/databasebackup_request.json). A provider in this collection
    registers the schema of its settings as C(plugins/plugin_utils/schemas/settings/<provider>.json).
  - Settings values that a schema marks C(writeOnly) (secrets) are never shown in violation messages.
requirements:
  - jsonschema >= 4.18 on the controller
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  request:
    description:
      - The request published by a requester role.
      - Keys are C(user) (unix user, default C(root)), C(backup_name) (plain file name, default C(dump)),
        C(backup_cmd) and C(restore_cmd) (required, non-blank shell commands), C(drill_cmd) (optional, a
        non-blank shell command that restores the dump from stdin into a scratch copy and checks it),
        C(drill_space) (optional, a dict of C(factor) and C(base_bytes), whole numbers; the drill wants factor x the
        dump's size + base_bytes bytes free for its scratch copy, factor 1 and base_bytes 0 by default),
        C(restore_into_cmd) (optional, restores the dump into the new target named by the environment variable
        C(SELFHOST_BACKUP_INTO)) and C(restore_database_cmd) (optional, restores the one database named by
        C(SELFHOST_BACKUP_DATABASE) out of a dump of several), and C(restore_checks_names) (optional boolean, false
        when absent; true says both commands know C(SELFHOST_BACKUP_CHECK=1), and the restore script asks them about
        the names before it opens the repository).
    type: dict
    required: true
  settings:
    description:
      - The provider-specific settings of one instance.
      - Validated and completed with defaults only when O(provider) or O(settings_schema) is given; otherwise
        returned unchanged.
    type: dict
  provider:
    description:
      - Name of a provider of this collection whose settings schema validates O(settings), for example C(restic).
      - An unknown provider is an error that lists the known ones.
    type: str
  settings_schema:
    description:
      - An explicit JSON Schema (draft 2020-12) for O(settings), for providers outside this collection.
      - Mutually exclusive with O(provider).
    type: dict
  name:
    description:
      - Prefix of the paths in violation messages, usually the instance's place in the provider's variables.
      - With V(restic_instances.app), a bad backup name is reported as C(restic_instances.app.request.backup_name).
      - When omitted, paths start with C(request) and C(settings).
    type: str
extends_documentation_fragment:
  - selfhost.backup.controller_only
notes:
  - When O(settings) carry secrets, set C(no_log) on the task; the returned settings contain them.
seealso:
  - module: selfhost.backup.backup_jobs
"""

EXAMPLES = r"""
- name: Validate the request of the postgresql role and the restic settings of instance app
  selfhost.backup.databasebackup_contract:
    name: restic_instances.app
    request: "{{ postgresql_databasebackup }}"
    provider: restic
    settings: "{{ restic_instances.app.settings }}"
  register: __restic_contract
  no_log: true

- name: Validate a request written with the seed contract's camelCase names
  selfhost.backup.databasebackup_contract:
    request:
      user: postgres
      backupName: postgresql.sql
      backupCmd: pg_dumpall
      restoreCmd: psql -v ON_ERROR_STOP=1 postgres
  register: contract
# contract.request == {user: postgres, backup_name: postgresql.sql, backup_cmd: pg_dumpall, restore_cmd: ...}

- name: Validate the settings of a provider from another collection with its own schema
  selfhost.backup.databasebackup_contract:
    request: "{{ mariadb_databasebackup }}"
    settings: "{{ kopia_settings }}"
    settings_schema: "{{ lookup('ansible.builtin.file', 'kopia-settings.schema.json') | from_json }}"
"""

RETURN = r"""
request:
  description: The request with aliases renamed to snake_case and defaults filled in.
  returned: success
  type: dict
  sample:
    user: postgres
    backup_name: dump
    backup_cmd: pg_dumpall
    restore_cmd: psql -v ON_ERROR_STOP=1 postgres
settings:
  description:
    - The settings, with defaults filled in when a schema was given; as given otherwise, null when not given.
  returned: success
  type: dict
  sample:
    repository:
      path: /srv/backup/app
violations:
  description: >-
    Every violation, sorted by path, as C(<path>: <message> (rule: <keyword>)).
  returned: failure
  type: list
  elements: str
  sample:
    - "request.backup_cmd: is required (rule: required)"
    - "request.foo: unknown key (rule: additionalProperties)"
"""
