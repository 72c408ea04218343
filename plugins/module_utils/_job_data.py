# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The data file of one instance's job script: the only generated part of it.

The program is static shell, shipped by the roles: ``job.sh`` (roles/provider_common/files/) and the provider's
half (roles/<provider>/files/<provider>.sh), installed in ``LIBRARY``. The restore script
``/usr/local/bin/<provider>-restore-<instance>`` holds the instance's data as readonly assignments and bash
arrays, then sources ``job.sh``. Every value is quoted here, once, with ``shlex.quote``: whatever a value holds
(quotes, ``$``, backticks, newlines) reaches the shell as that exact string and is never expanded. Pure
functions, no I/O.
"""

from __future__ import annotations

import re
import shlex
import typing as t

# Where the roles install job.sh and the providers' halves.
LIBRARY = '/usr/local/lib/selfhost-backup'
SHEBANG = '#!/bin/bash'
_NAME = re.compile(r'[A-Z_][A-Z0-9_]*')

# A value of the data file: a string or an integer, a list of strings (a bash array), or a mapping of strings
# (an associative array).
Value = t.Union[str, int, t.Sequence[str], t.Mapping[str, str]]


class JobDataError(ValueError):
    """A value that cannot be written to a job's data file."""


def _word(value: t.Any, name: str) -> str:
    if not isinstance(value, str):
        raise JobDataError(f'{name}: expected a string, got {value!r}')
    if '\0' in value:
        raise JobDataError(f'{name}: a NUL byte has no place in a shell value (bash would drop it)')
    return shlex.quote(value)


def assignment(name: str, value: Value) -> str:
    """One ``readonly`` line of the data file; ``value`` is quoted for bash, once."""
    if not _NAME.fullmatch(name):
        raise JobDataError(f'not a data variable name: {name!r}')
    if isinstance(value, bool):
        raise JobDataError(f'{name}: a boolean has no shell form; use "yes" or ""')
    if isinstance(value, int):
        return f'readonly {name}={value}'
    if isinstance(value, str):
        return f'readonly {name}={_word(value, name)}'
    if isinstance(value, t.Mapping):
        if '' in value:
            raise JobDataError(f'{name}: an associative array has no empty key')
        pairs = ' '.join(f'[{_word(key, name)}]={_word(item, name)}' for key, item in sorted(value.items()))
        return f'readonly -A {name}=({pairs})'
    return f'readonly {name}=(' + ' '.join(_word(item, name) for item in value) + ')'


def render(data: t.Sequence[tuple[str, Value]], header: t.Sequence[str] = ()) -> str:
    """The data file: a bash script of readonly assignments that sources ``$LIBRARY/job.sh`` at its end.

    ``data`` must define ``LIBRARY``; a name given twice is a bug and raises.
    """
    names = [name for name, dummy in data]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise JobDataError(f'data variables given twice: {", ".join(doubled)}')
    if 'LIBRARY' not in names:
        raise JobDataError('the data must say where the program is (LIBRARY)')
    if any('\n' in line or '\r' in line for line in header):
        raise JobDataError('a header line of the data file holds a line break')
    lines = [SHEBANG, *(f'# {line}' if line else '#' for line in header)]
    lines += [assignment(name, value) for name, value in data]
    lines.append('source "$LIBRARY/job.sh"')
    return '\n'.join(lines) + '\n'
