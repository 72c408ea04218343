# Managed by Ansible (selfhost.backup.provider_common): local changes will be overwritten.
"""The JSON listing of a backup tool's snapshots, as ``<provider>-restore-<instance> snapshots --json`` prints it.

Reads the tool's own JSON on stdin (``restic snapshots --json``, ``borg list --json``) and prints a JSON list of
objects with the same keys for every tool: ``id`` (what ``restore`` and ``dump`` take), ``time`` (ISO 8601 with
the UTC offset), ``host``, ``size`` (an integer, null where the tool does not tell it).

The arguments say where the tool keeps them; they are the provider's data, built in Python like its command lines:
the dotted path of the list in the document (``.`` for the document itself), then ``<key>=<dotted path>`` for each
key. Run by job.sh (``snapshot_list``) as ``python3 -I``; exits 1 with a message when the input is not such a list.
"""

from __future__ import annotations

import datetime
import json
import sys
import typing as t


def dig(value: t.Any, path: str) -> t.Any:
    """The value at a dotted path, None when a step is missing."""
    if path == '.':
        return value
    for part in path.split('.'):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def moment(value: t.Any) -> t.Any:
    """A time with its UTC offset: a tool that gives the host's local time without one (borg) gets it added;
    a time that has one is kept as the tool wrote it (restic's nanoseconds included)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        return value
    return parsed.astimezone().isoformat()


def convert(document: t.Any, list_path: str, fields: dict[str, str]) -> list[dict[str, t.Any]]:
    items = dig(document, list_path)
    if not isinstance(items, list):
        raise ValueError(f'no list at {list_path!r}')
    result = []
    for item in items:
        entry = {key: dig(item, path) for key, path in fields.items()}
        if 'time' in entry:
            entry['time'] = moment(entry['time'])
        if 'size' in entry and (not isinstance(entry['size'], int) or isinstance(entry['size'], bool)):
            entry['size'] = None
        result.append(entry)
    return result


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any('=' not in field for field in argv[2:]):
        print('usage: snapshots_json.py <list path> <key>=<path>...', file=sys.stderr)
        return 2
    fields = dict(field.split('=', 1) for field in argv[2:])
    try:
        listing = convert(json.load(sys.stdin), argv[1], fields)
    except ValueError as exc:  # json.JSONDecodeError is one
        print(f'snapshots --json: cannot read the listing of the backup tool: {exc}', file=sys.stderr)
        return 1
    json.dump(listing, sys.stdout, indent=2)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
