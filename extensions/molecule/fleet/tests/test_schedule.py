"""The default schedule spreads the fleet's backups: every client's backup timer has the default RandomizedDelaySec
(an hour) with FixedRandomDelay, so each host keeps its own minute after midnight, and the server never sees more
than MAX_STARTS_PER_MINUTE of the fleet's backups start in one minute (the number the README's "Many hosts" section
documents for this fleet size). Read from systemd's own next elapse times on every client."""

from __future__ import annotations

import collections
import json

import pytest

from conftest import Box
from test_fleet import CLIENTS

# 8 jobs drawn uniformly over the 60 minutes after midnight: 4 or more in the same minute happen with a chance of
# about 1 in 3,000 (C(8,4) / 60^3); without the spread all 8 start at 00:00:00.
MAX_STARTS_PER_MINUTE = 3
WINDOW_USEC = 3600 * 1_000_000


def backup_timers(client: str) -> list[dict]:
    """The client's backup timers (not drills or checks) with their next elapse time (µs since the epoch)."""
    listed = json.loads(Box(client).ok("systemctl list-timers --all --output=json"))
    return [timer for timer in listed if timer["unit"].endswith("-backup-app.timer")]


@pytest.fixture(name="next_starts", scope="module")
def fixture_next_starts() -> dict[str, int]:
    starts = {}
    for client in sorted(CLIENTS):
        timers = backup_timers(client)
        assert [timer["unit"] for timer in timers] == [f"{CLIENTS[client][0]}-backup-app.timer"], timers
        starts[client] = int(timers[0]["next"])
    return starts


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_each_backup_timer_has_a_fixed_random_delay_of_an_hour(client: str, next_starts: dict[str, int]):
    unit = f"{CLIENTS[client][0]}-backup-app.timer"
    shown = Box(client).ok(f"systemctl show -p RandomizedDelayUSec -p FixedRandomDelay -p TimersCalendar {unit}")
    assert "RandomizedDelayUSec=1h" in shown and "FixedRandomDelay=yes" in shown, shown
    # The start lies within the hour after midnight (OnCalendar=daily) ...
    midnight = next_starts[client] - next_starts[client] % (86400 * 1_000_000)
    assert 0 <= next_starts[client] - midnight < WINDOW_USEC
    # ... and stays where it is: a reload draws the same delay again (without FixedRandomDelay it would not).
    Box(client).ok("systemctl daemon-reload")
    assert int(backup_timers(client)[0]["next"]) == next_starts[client]


def test_the_server_sees_at_most_a_few_backups_start_in_one_minute(next_starts: dict[str, int]):
    # FixedRandomDelay= hashes the machine ID: clones of one image that share it start together (the README's
    # caveat). Images built before tests/images/build-images.sh removed /var/lib/dbus/machine-id do: rebuild them.
    machine_ids = {client: Box(client).ok("cat /etc/machine-id").strip() for client in CLIENTS}
    assert len(set(machine_ids.values())) == len(CLIENTS), (
        "the test containers share machine IDs (images older than the machine-id fix: make images-rebuild)",
        machine_ids)
    per_minute = collections.Counter(start // 60_000_000 for start in next_starts.values())
    busiest = max(per_minute.values())
    assert busiest <= MAX_STARTS_PER_MINUTE, sorted(next_starts.items(), key=lambda item: item[1])
    # Spread, not bunched: the clients' starts fall in more than a handful of different minutes.
    assert len(per_minute) >= len(CLIENTS) - MAX_STARTS_PER_MINUTE
