# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""settings.monitoring of one instance: what the job script and its units use (no secret), and the root-only
file of the ping URL. Pure, no I/O.
"""

from __future__ import annotations

import dataclasses
import posixpath
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _layout


# The ping URL identifies the check at the monitoring service: whoever knows it can report for the job, so it
# is a secret, kept in a root-only file that only the root hooks read (never a credential of the job's user).
PING_URL_SECRET = 'ping_url'


@dataclasses.dataclass(frozen=True)
class Monitoring:
    """settings.monitoring of one instance, as the job script and its units use it. No secret in it."""

    notify_cmd: str = ''  # on_failure: run by the units' OnFailure= with the failed unit's log
    late_after: int = 93600  # seconds without a new snapshot after which selfhost-backup status says late
    metrics_file: str = ''  # the instance's node-exporter textfile (<metrics_directory>/<job>.prom), '' for none
    ping_url_file: str = ''  # root-only file holding ping_url, '' for none
    ping_timeout: int = 10
    ping_retries: int = 3

    @property
    def has_hooks(self) -> bool:
        """Whether the backup service needs the root start and finish hooks (metrics, pings)."""
        return bool(self.metrics_file or self.ping_url_file)


def monitoring(layout: _layout.Layout, settings: t.Mapping[str, t.Any]) -> Monitoring:
    """settings.monitoring, validated by the provider's schema, with its defaults."""
    given = settings['monitoring']
    metrics_dir = given.get('metrics_directory')
    return Monitoring(
        notify_cmd=str(given.get('on_failure') or ''),
        late_after=int(given['late_after']),
        metrics_file=posixpath.join(metrics_dir, f'{layout.job_name}.prom') if metrics_dir else '',
        ping_url_file=layout.secret_path(PING_URL_SECRET) if given.get('ping_url') else '',
        ping_timeout=int(given['ping_timeout']),
        ping_retries=int(given['ping_retries']),
    )


def monitoring_secret_files(layout: _layout.Layout, settings: t.Mapping[str, t.Any]) -> list[tuple[str, str]]:
    """The root-only files of settings.monitoring (the ping URL), as (path, content) like Secrets.files."""
    url = settings['monitoring'].get('ping_url')
    return [(layout.secret_path(PING_URL_SECRET), str(url))] if url else []
