# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Controller-side validation of the database backup contract against its JSON Schemas.

The schemas in ``schemas/`` are the single source of truth: aliases (``x-aliases``), defaults
(``default``) and rules all come from them; nothing here repeats a key name of the contract.

The settings every provider shares live once, in ``schemas/settings/_common.json``; a provider's schema takes
them with ``"$ref": "_common.json#/$defs/<name>"``. Such a ``$ref`` is replaced by (a copy of) what it points
at before anything reads the schema (``inline_shared``), so aliases, defaults and ``writeOnly`` secrets work on
the shared blocks exactly as if the provider had written them out.
"""

from __future__ import annotations

import copy
import json
import os
import re
import typing as t
import urllib.parse

try:
    import jsonschema
except ImportError as _exc:  # pragma: no cover - exercised by test_missing_jsonschema via monkeypatch
    jsonschema = None
    JSONSCHEMA_IMPORT_ERROR: ImportError | None = _exc
else:
    JSONSCHEMA_IMPORT_ERROR = None

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schemas')
SETTINGS_SCHEMA_DIR = os.path.join(SCHEMA_DIR, 'settings')
REQUEST_SCHEMA = 'databasebackup_request'
RESULT_SCHEMA = 'databasebackup_result'
# The blocks the providers' settings share; a file of the settings folder, but not a provider.
SHARED_SETTINGS_SCHEMA = '_common'
# What may stand beside a ``$ref`` to a shared block: words about it, never a rule (a rule there would apply on
# top of the block's rules in JSON Schema, but replace them once inlined).
_REF_ANNOTATIONS = frozenset(('description', 'title', 'default', 'examples', '$comment'))

# A provider name becomes a file name: keep it to a safe identifier so it can never walk out of the folder.
_PROVIDER_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_PLAIN_KEY = re.compile(r'^[A-Za-z0-9_-]+$')
# Values longer than this are shortened in messages: a 10 kB command line helps nobody read an error.
_MAX_SHOWN_VALUE = 80


class ContractError(Exception):
    """A schema cannot be found, read or used, or jsonschema is missing."""


class ContractViolation(Exception):
    """A document broke its schema; ``violations`` holds every message."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__('\n'.join(violations))
        self.violations = violations


def require_jsonschema() -> None:
    if jsonschema is None:
        raise ContractError(
            'The Python library jsonschema (>= 4.18) is required on the Ansible controller to validate the '
            'database backup contract; install it next to ansible-core (pip install jsonschema). '
            f'Import error: {JSONSCHEMA_IMPORT_ERROR}'
        )


def load_schema_file(path: str) -> dict[str, t.Any]:
    try:
        with open(path, encoding='utf-8') as handle:
            schema = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ContractError(f'Cannot read the JSON schema {path}: {exc}') from exc
    check_schema(schema, origin=path)
    return schema


def check_schema(schema: t.Any, origin: str = 'settings_schema') -> None:
    """Refuse a broken schema up front: otherwise every document would be judged by nonsense."""
    require_jsonschema()
    if not isinstance(schema, dict):
        raise ContractError(f'{origin} is not a JSON schema object')
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ContractError(f'{origin} is not a valid JSON Schema (draft 2020-12): {exc.message}') from exc


def load_contract_schema(name: str) -> dict[str, t.Any]:
    return load_schema_file(os.path.join(SCHEMA_DIR, f'{name}.json'))


def known_providers(settings_dir: str | None = None) -> list[str]:
    settings_dir = settings_dir or SETTINGS_SCHEMA_DIR
    if not os.path.isdir(settings_dir):
        return []
    return sorted(entry[:-5] for entry in os.listdir(settings_dir)
                  if entry.endswith('.json') and _PROVIDER_NAME.fullmatch(entry[:-5]))


def load_provider_schema(provider: str, settings_dir: str | None = None) -> dict[str, t.Any]:
    settings_dir = settings_dir or SETTINGS_SCHEMA_DIR
    path = os.path.join(settings_dir, f'{provider}.json')
    if not _PROVIDER_NAME.fullmatch(provider) or not os.path.isfile(path):
        known = ', '.join(known_providers(settings_dir)) or 'none'
        raise ContractError(
            f'Unknown provider {provider!r}: no settings schema plugins/plugin_utils/schemas/settings/{provider}.json '
            f'in selfhost.backup (known providers: {known}). Pass settings_schema for a provider outside this collection.'
        )
    return inline_shared(load_schema_file(path), settings_dir)


def _shared_documents(settings_dir: str) -> dict[str, t.Any]:
    """The shared settings blocks of ``settings_dir`` by their ``$id`` (none when the folder has no such file)."""
    path = os.path.join(settings_dir, f'{SHARED_SETTINGS_SCHEMA}.json')
    if not os.path.isfile(path):
        return {}
    shared = load_schema_file(path)
    return {urllib.parse.urldefrag(str(shared.get('$id', ''))).url: shared}


def _pointed_at(document: t.Any, fragment: str, ref: str) -> t.Any:
    node = document
    for token in fragment.split('/')[1:] if fragment else []:
        token = token.replace('~1', '/').replace('~0', '~')
        if not isinstance(node, dict) or token not in node:
            raise ContractError(f'The settings schema refers to {ref!r}, which points at nothing')
        node = node[token]
    return node


def inline_shared(schema: dict[str, t.Any], settings_dir: str | None = None) -> dict[str, t.Any]:
    """Return a copy of ``schema`` with each ``$ref`` to a shared settings block replaced by that block.

    A ``$ref`` is resolved against the schema's ``$id`` (``_common.json#/$defs/enable`` in a schema whose ``$id``
    is ``https://selfhost.backup/schemas/settings/restic.json``); one that points into another document is left
    to jsonschema. Annotations beside the ``$ref`` (a provider's own ``description``) replace the block's, and
    come first, as a provider writes them. The shared blocks are read only when a schema refers to them.
    """
    documents: dict[str, t.Any] | None = None

    def resolve(node: t.Any, base: str, seen: tuple[str, ...]) -> t.Any:
        nonlocal documents
        if isinstance(node, list):
            return [resolve(item, base, seen) for item in node]
        if not isinstance(node, dict):
            return copy.deepcopy(node)
        ref = node.get('$ref')
        if not isinstance(ref, str):
            return {key: resolve(value, base, seen) for key, value in node.items()}
        target_uri = urllib.parse.urljoin(base, ref)
        document_uri, fragment = urllib.parse.urldefrag(target_uri)
        if document_uri and documents is None and document_uri != base:
            documents = _shared_documents(settings_dir or SETTINGS_SCHEMA_DIR)
        if not document_uri or document_uri not in (documents or {}):
            return {key: resolve(value, base, seen) for key, value in node.items()}
        if target_uri in seen:
            raise ContractError(f'The settings schema refers to {ref!r} in a circle')
        rules = sorted(key for key in node if key != '$ref' and key not in _REF_ANNOTATIONS)
        if rules:
            raise ContractError(f'The settings schema gives {", ".join(rules)} beside the $ref {ref!r}: only '
                                f'{", ".join(sorted(_REF_ANNOTATIONS))} may stand there')
        block = resolve(_pointed_at(t.cast(dict, documents)[document_uri], fragment, ref), document_uri,
                        seen + (target_uri,))
        if not isinstance(block, dict):
            raise ContractError(f'The settings schema refers to {ref!r}, which is not a schema object')
        joined = {key: resolve(value, base, seen) for key, value in node.items() if key != '$ref'}
        joined.update((key, value) for key, value in block.items() if key not in joined)
        return joined

    return t.cast(dict, resolve(schema, str(schema.get('$id', '')), ()))


def format_path(prefix: str, parts: t.Iterable[t.Any]) -> str:
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f'[{part}]'
        elif _PLAIN_KEY.fullmatch(str(part)):
            path += f'.{part}' if path else str(part)
        else:
            path += f'[{str(part)!r}]'
    return path


def normalise_aliases(document: dict[str, t.Any], schema: dict[str, t.Any], prefix: str) -> tuple[dict[str, t.Any], list[str]]:
    """Rename the aliases a schema declares (``x-aliases`` of a property) to the property's own name.

    Returns the renamed copy and a violation for every key given under two spellings.
    """
    renamed = dict(document)
    violations = []
    for canonical, subschema in schema.get('properties', {}).items():
        for alias in subschema.get('x-aliases', []) if isinstance(subschema, dict) else []:
            if alias not in renamed:
                continue
            if canonical in renamed:
                violations.append(
                    f'{format_path(prefix, [alias])}: {alias!r} and {canonical!r} are the same key, '
                    f'give only {canonical!r} (rule: x-aliases)'
                )
                del renamed[alias]
                continue
            renamed[canonical] = renamed.pop(alias)
    return renamed, violations


def fill_defaults(document: t.Any, schema: dict[str, t.Any]) -> t.Any:
    """Return a copy with each absent property set to its schema ``default``, recursing into nested objects.

    Only ``properties`` are followed (no ``$ref``, no combinators): enough for flat contract schemas and
    nested settings objects, and predictable for provider authors. The shared settings blocks are no ``$ref``
    by then: ``load_provider_schema`` and ``validate_settings`` inline them first.
    """
    if not isinstance(document, dict) or not isinstance(schema, dict):
        return copy.deepcopy(document)
    filled = copy.deepcopy(document)
    for key, subschema in schema.get('properties', {}).items():
        if not isinstance(subschema, dict):
            continue
        if key not in filled and 'default' in subschema:
            filled[key] = copy.deepcopy(subschema['default'])
        elif key in filled:
            filled[key] = fill_defaults(filled[key], subschema)
    return filled


def _shown(value: t.Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[:_MAX_SHOWN_VALUE - 5] + '...' + text[-2:]


def _missing_key(error: t.Any) -> str:
    # jsonschema yields one error per missing key, worded "'<key>' is a required property".
    for key in error.validator_value:
        if error.message.startswith(repr(key)):
            return key
    return str(error.validator_value)  # pragma: no cover - only if jsonschema changes its wording


def _unknown_keys(error: t.Any) -> list[str]:
    known = error.schema.get('properties', {})
    patterns = error.schema.get('patternProperties', {})
    return [
        key for key in error.instance
        if key not in known and not any(re.search(pattern, key) for pattern in patterns)
    ]


def _holds_secret(schema: t.Any) -> bool:
    """Whether a subschema is, or describes anything holding, a ``writeOnly`` (secret) value: then a wrong
    value there (a URL where an object belongs) is never quoted either."""
    if isinstance(schema, dict):
        return schema.get('writeOnly') is True or any(_holds_secret(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_holds_secret(value) for value in schema)
    return False


def _explain(error: t.Any) -> str:
    """Word one error for a human; the value is hidden where the schema marks it ``writeOnly`` (secrets).

    A subschema's own ``x-violation`` text, when it has one, replaces jsonschema's message.
    """
    keyword = error.validator
    if isinstance(error.schema, dict) and isinstance(error.schema.get('x-violation'), str):
        # A schema may word its own rule (e.g. two keys that exclude each other), never quoting the value.
        return error.schema['x-violation']
    if _holds_secret(error.schema):
        if keyword == 'type':
            return f'is not of type {error.validator_value!r} (value hidden: it may hold a secret)'
        return 'invalid value (hidden: the schema marks it writeOnly)'
    if keyword == 'maxLength':
        return f'{_shown(error.instance)} is longer than {error.validator_value} characters'
    if keyword == 'minLength':
        return f'{_shown(error.instance)} is shorter than {error.validator_value} characters'
    if keyword == 'pattern':
        return f'{_shown(error.instance)} does not match {error.validator_value!r}'
    if keyword == 'type':
        return f'{_shown(error.instance)} is not of type {error.validator_value!r}'
    return error.message


def _violations_of(error: t.Any) -> list[tuple[list[t.Any], str, str]]:
    """Turn one jsonschema error into (path, text, rule) triples; some errors name several keys."""
    path = list(error.absolute_path)
    if error.validator == 'required':
        return [(path + [_missing_key(error)], 'is required', 'required')]
    if error.validator == 'additionalProperties' and error.validator_value is False:
        return [(path + [key], 'unknown key', 'additionalProperties') for key in _unknown_keys(error)]
    return [(path, _explain(error), str(error.validator))]


def ecma_anchors(pattern: str) -> str:
    """Rewrite each end anchor ``$`` (outside a class, unescaped) as ``\\Z``.

    JSON Schema patterns are ECMA-262, where ``$`` matches only at the very end; Python's ``$`` also matches
    before a final newline, which would let ``'dump\\n'`` pass ``^[A-Za-z0-9._-]*$``.
    """
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == '\\':
            escaped = True
        elif char == '[':
            in_class = True
        elif char == ']':
            in_class = False
        elif char == '$' and not in_class:
            char = '\\Z'
        out.append(char)
    return ''.join(out)


def _ecma_pattern(validator: t.Any, pattern: str, instance: t.Any, schema: dict[str, t.Any]) -> t.Iterator[t.Any]:
    if validator.is_type(instance, 'string') and not re.search(ecma_anchors(pattern), instance):
        yield jsonschema.ValidationError(f'{instance!r} does not match {pattern!r}')


def _is_integer(checker: t.Any, instance: t.Any) -> bool:
    """An integer is an int, never a float such as 7.0: JSON Schema would accept 7.0, but the value reaches the
    tools' command lines as ``7.0``, which they refuse only when the job runs."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _validator_class() -> t.Any:
    base = jsonschema.Draft202012Validator
    return jsonschema.validators.extend(base, {'pattern': _ecma_pattern},
                                        type_checker=base.TYPE_CHECKER.redefine('integer', _is_integer))


def collect_violations(document: t.Any, schema: dict[str, t.Any], prefix: str) -> list[str]:
    """Every violation of ``schema`` by ``document``, sorted by path, as ``<path>: <text> (rule: <keyword>)``."""
    require_jsonschema()
    validator = _validator_class()(schema)
    triples = [triple for error in validator.iter_errors(document) for triple in _violations_of(error)]
    triples.sort(key=lambda triple: ([str(part) for part in triple[0]], triple[2], triple[1]))
    return [f'{format_path(prefix, path)}: {text} (rule: {rule})' for path, text, rule in triples]


def normalise(document: t.Any, schema: dict[str, t.Any], prefix: str) -> dict[str, t.Any]:
    """Rename aliases, fill defaults and validate; raise ContractViolation with every problem at once."""
    violations: list[str] = []
    if isinstance(document, dict):
        document, violations = normalise_aliases(document, schema, prefix)
    document = fill_defaults(document, schema)
    violations = sorted(violations + collect_violations(document, schema, prefix))
    if violations:
        raise ContractViolation(violations)
    return document


def prefix_for(name: str | None, part: str) -> str:
    return f'{name}.{part}' if name else part


def validate_request(request: t.Any, name: str | None = None) -> dict[str, t.Any]:
    return normalise(request, load_contract_schema(REQUEST_SCHEMA), prefix_for(name, 'request'))


def validate_result(result: t.Any, name: str | None = None) -> dict[str, t.Any]:
    return normalise(result, load_contract_schema(RESULT_SCHEMA), prefix_for(name, 'result'))


def validate_settings(settings: t.Any, schema: dict[str, t.Any], name: str | None = None) -> dict[str, t.Any]:
    # A schema passed in (a copy of a provider's file, or a provider outside the collection) may take shared blocks.
    return normalise(settings, inline_shared(schema), prefix_for(name, 'settings'))
