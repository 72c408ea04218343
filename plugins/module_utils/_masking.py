# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Secrets masked in every form a program writes them: used by the secret modules' action plugins on a module's
crash output, and by the modules themselves (``_crash``) on an unexpected error's message."""

from __future__ import annotations

import json
import re
import shlex
import typing as t

MASK = '********'


def written_forms(secret: str) -> set[str]:
    """How ``secret`` can stand in a program's output: as it is; JSON-escaped (non-ASCII kept or escaped); inside
    a Python repr of the text, of its ASCII escape or of its UTF-8 bytes (between single quotes, where repr
    escapes a ', and, without a " in it, between double quotes); shell-quoted (shlex.quote, as in a command line
    a Python error message shows)."""
    forms = {secret, shlex.quote(secret)}
    forms.update(json.dumps(secret, ensure_ascii=ascii_only)[1:-1] for ascii_only in (True, False))
    quotes = ('"', "'") if '"' not in secret else ('"',)
    for quote in quotes:
        # A " added makes repr quote with ' (escaping a ' of the secret); a ', with no " in the secret, with ".
        # The added quote and the closing one are cut off again.
        forms.add(repr(secret + quote)[1:-2])
        forms.add(ascii(secret + quote)[1:-2])
        forms.add(repr((secret + quote).encode('utf-8', 'surrogateescape'))[2:-2])
    return {form for form in forms if form}


def masker(secrets: t.Iterable[str]) -> t.Callable[[str], str]:
    """A function that replaces every written form of each secret in a text with the mask, longest first.

    A secret is also masked without the line breaks at its end (the modules use a secret given inline so, as if read
    from its file) and without the white space around it (as tools trim a secret file)."""
    variants = {variant for secret in secrets for variant in (secret, secret.rstrip('\n'), secret.strip()) if variant}
    forms = sorted({form for secret in variants for form in written_forms(secret)}, key=len, reverse=True)
    if not forms:
        return lambda text: text
    pattern = re.compile('|'.join(re.escape(form) for form in forms))
    return lambda text: pattern.sub(MASK, text)
