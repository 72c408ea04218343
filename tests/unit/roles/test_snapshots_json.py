# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""snapshots_json.py, the JSON listing of snapshots --json, run as job.sh runs it (python3 -I, the tool's JSON on
stdin) with the fields restic and borg name in their data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _restic

HELPER = Path(__file__).resolve().parents[3] / 'roles' / 'provider_common' / 'files' / 'snapshots_json.py'


def listing(stdin: str, *fields: str, tz: str = 'UTC-2') -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-I', str(HELPER), *fields], input=stdin, capture_output=True, text=True,
                          env={'PATH': os.environ['PATH'], 'TZ': tz}, check=False)


def test_restic_0_18_with_its_summary_and_0_14_without():
    snapshots = [
        {'time': '2026-03-01T02:03:04.123456789+01:00', 'hostname': 'h1', 'id': 'a' * 64, 'short_id': 'aaaaaaaa',
         'tags': ['selfhost-backup:app'], 'paths': ['/db.sql'], 'summary': {'total_bytes_processed': 12345}},
        {'time': '2025-03-01T02:03:04Z', 'hostname': 'h1', 'id': 'b' * 64, 'short_id': 'bbbbbbbb'},
    ]
    result = listing(json.dumps(snapshots), *_restic.SNAPSHOT_FIELDS)
    assert result.returncode == 0, result.stderr
    # restic's times carry their offset and are kept as restic wrote them (nanoseconds too).
    assert json.loads(result.stdout) == [
        {'id': 'a' * 64, 'time': '2026-03-01T02:03:04.123456789+01:00', 'host': 'h1', 'size': 12345},
        {'id': 'b' * 64, 'time': '2025-03-01T02:03:04Z', 'host': 'h1', 'size': None}]


def test_borg_archives_get_the_host_s_offset():
    document = {'archives': [{'name': 'app@h1-2026-03-01T02:03:04.000001', 'archive': 'x', 'id': 'ff',
                              'time': '2026-03-01T02:03:04.000001', 'hostname': 'h1'}],
                'encryption': {'mode': 'repokey'}, 'repository': {'id': '00'}}
    result = listing(json.dumps(document), *_borg.SNAPSHOT_FIELDS, tz='UTC+5')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{'id': 'app@h1-2026-03-01T02:03:04.000001',
                                          'time': '2026-03-01T02:03:04.000001-05:00', 'host': 'h1', 'size': None}]


def test_an_empty_repository_is_an_empty_list():
    assert json.loads(listing('[]', *_restic.SNAPSHOT_FIELDS).stdout) == []
    assert json.loads(listing('{"archives": []}', *_borg.SNAPSHOT_FIELDS).stdout) == []


@pytest.mark.parametrize('size', [True, '12', 1.5])
def test_a_size_that_is_no_integer_is_null(size):
    result = listing(json.dumps([{'id': 'a', 'summary': {'total_bytes_processed': size}}]), *_restic.SNAPSHOT_FIELDS)
    assert json.loads(result.stdout)[0]['size'] is None


@pytest.mark.parametrize('stdin, fields', [
    ('', _restic.SNAPSHOT_FIELDS),
    ('Fatal: wrong password or no key found', _restic.SNAPSHOT_FIELDS),
    ('{"archives": {}}', _borg.SNAPSHOT_FIELDS),
    ('[]', _borg.SNAPSHOT_FIELDS),
])
def test_what_is_not_such_a_listing_fails_with_a_message(stdin, fields):
    result = listing(stdin, *fields)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.startswith('snapshots --json: cannot read the listing of the backup tool: ')


def test_fields_without_a_path_are_a_usage_error():
    result = listing('[]', '.', 'id')
    assert result.returncode == 2 and 'usage:' in result.stderr
