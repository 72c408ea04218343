# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How the module tests see a module end: AnsibleModule.exit_json and fail_json raise SystemExit with the status
AnsibleModule exits with (0, or 1 for a failure), carrying the module's result as ``result`` instead of printing
it. A test runs a module's main() with its arguments like this:

    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            job_paths.main()
    result = info.value.result

The result is exactly what the module passed (fail_json adds msg and failed: true, as AnsibleModule does): a secret
the module puts into it is there for the test to find. A test file that overrides the fixture ``as_reported`` to
return True sees it as Ansible reports it instead: no_log values masked (AnsibleModule does that on the way out)
and failed: false on success. A test of the real output may ``monkeypatch.undo()`` these patches.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible.module_utils import basic


class ModuleExit(SystemExit):
    """exit_json or fail_json was called: ``code`` 0 or 1, ``result`` what the module returned."""

    def __init__(self, code: int, result: dict[str, t.Any]) -> None:
        super().__init__(code)
        self.result = result


@pytest.fixture
def as_reported() -> bool:
    """False: the result as the module passed it. Override it to return True: as Ansible reports it."""
    return False


@pytest.fixture(autouse=True)
def module_exits(monkeypatch: pytest.MonkeyPatch, as_reported: bool) -> None:
    def returned(module: basic.AnsibleModule, result: dict[str, t.Any]) -> dict[str, t.Any]:
        return basic.remove_values(result, module.no_log_values) if as_reported else result

    def exit_json(self: basic.AnsibleModule, **result: t.Any) -> t.NoReturn:
        raise ModuleExit(0, returned(self, dict(result, failed=False) if as_reported else result))

    def fail_json(self: basic.AnsibleModule, msg: str, **result: t.Any) -> t.NoReturn:
        raise ModuleExit(1, returned(self, dict(result, msg=msg, failed=True)))

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
