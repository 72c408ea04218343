"""The default schedules spread every job of the fleet's clients that opens the server's repository: the backup
(daily), the repository check (weekly, Sunday 04:00) and the restore drill (weekly, Wednesday 05:30), which the
converge enables on every client with their default schedules (vars.yml). Every one of these timers has the default
RandomizedDelaySec (an hour) with FixedRandomDelay, so each host keeps its own minute in the hour after the calendar
time, and the server never sees more than MAX_STARTS_PER_MINUTE of them start in one minute, per kind and all kinds
together (the number the README's "Many hosts" section documents for 8 jobs in an hour). The server's own maintenance
starts in none of the clients' minutes. Read from systemd's own next elapse times on every host (UTC)."""

from __future__ import annotations

import collections
import json
import re

import pytest

from conftest import Box
from test_fleet import CLIENTS, SERVER

MINUTE, HOUR, DAY = 60 * 1_000_000, 3600 * 1_000_000, 86400 * 1_000_000
WEEK = 7 * DAY
# The kinds of timers a client with a server repository has, as the roles name them and systemd shows their default
# OnCalendar=, with the period of the calendar and where its time lies in the period: the epoch (1970-01-01 00:00
# UTC) was a Thursday, Sunday is 3 days after it, Wednesday 6.
KINDS = {
    "backup": ("{provider}-backup-app.timer", "*-*-* 00:00:00", DAY, 0),
    "check": ("{provider}-backup-app-check.timer", "Sun *-*-* 04:00:00", WEEK, 3 * DAY + 4 * HOUR),
    "drill": ("{provider}-drill-app.timer", "Wed *-*-* 05:30:00", WEEK, 6 * DAY + 5 * HOUR + 30 * MINUTE),
}
# Every kind's default RandomizedDelaySec=3600 (schedule.randomized_delay_sec, which the check timer shares, and
# drill.randomized_delay_sec).
WINDOW = HOUR
# The bound, from the defaults: each kind's 8 jobs (one per client) draw their minute uniformly from the 60 minutes of
# their window; 4 or more in the same minute happen with a chance of about 1 in 3,000 per kind (60 * C(8,4) / 60^4),
# about 1 in 1,000 for the three kinds. Without the spread all 8 of a kind start in the same minute. All kinds
# together have the same bound: their default windows (00:00-01:00, Sunday 04:00-05:00, Wednesday 05:30-06:30) share
# no time of day, so no minute holds jobs of two kinds.
MAX_STARTS_PER_MINUTE = 3
MAINTENANCE = "selfhost-backup-server-maintenance.timer"
# (client, kind) -> the next start of that client's timer of that kind (µs since the epoch).
Starts = dict[tuple[str, str], int]


def client_timers(client: str) -> dict[str, int]:
    """The client's timers of its instance app, whose repository is on the server (tests/test_tls.py adds an instance
    on another server), whatever their kind, with their next elapse time (µs since the epoch)."""
    listed = json.loads(Box(client).ok("systemctl list-timers --all --output=json"))
    return {timer["unit"]: int(timer["next"]) for timer in listed
            if re.fullmatch(r"(restic|borg)-[a-z]+-app(-[a-z]+)?\.timer", timer["unit"])}


def unit_of(client: str, kind: str) -> str:
    return KINDS[kind][0].format(provider=CLIENTS[client][0])


@pytest.fixture(name="next_starts", scope="module")
def fixture_next_starts() -> Starts:
    """(client, kind) -> the next start of that client's timer of that kind: every kind on every client, and no
    other timer of the tools (a new kind must be added to KINDS, with its window)."""
    starts = {}
    for client in sorted(CLIENTS):
        timers = client_timers(client)
        assert sorted(timers) == sorted(unit_of(client, kind) for kind in KINDS), (client, timers)
        for kind in KINDS:
            starts[client, kind] = timers[unit_of(client, kind)]
    return starts


def delay_of(start: int, kind: str) -> int:
    """How long after its calendar time (the last one before ``start``) a timer of this kind starts."""
    dummy, dummy, period, offset = KINDS[kind]
    return (start - offset) % period


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_every_timer_that_reaches_the_server_has_a_fixed_random_delay_of_an_hour(client: str, next_starts: Starts):
    for kind, (dummy, calendar, dummy, dummy) in KINDS.items():
        unit = unit_of(client, kind)
        shown = Box(client).ok(f"systemctl show -p RandomizedDelayUSec -p FixedRandomDelay -p TimersCalendar {unit}")
        assert "RandomizedDelayUSec=1h" in shown and "FixedRandomDelay=yes" in shown, (unit, shown)
        assert f"OnCalendar={calendar} ;" in shown, (unit, shown)
        # The start lies within the hour after the calendar time ...
        assert 0 <= delay_of(next_starts[client, kind], kind) < WINDOW, (unit, next_starts[client, kind])
    # ... and stays where it is: a reload draws the same delays again (without FixedRandomDelay it would not).
    Box(client).ok("systemctl daemon-reload")
    assert client_timers(client) == {unit_of(client, kind): next_starts[client, kind] for kind in KINDS}


def test_the_clients_have_their_own_machine_ids():
    # FixedRandomDelay= hashes the machine ID: clones of one image that share it start together (the README's
    # caveat). Images built before tests/images/build-images.sh removed /var/lib/dbus/machine-id do: rebuild them.
    machine_ids = {client: Box(client).ok("cat /etc/machine-id").strip() for client in CLIENTS}
    assert len(set(machine_ids.values())) == len(CLIENTS), (
        "the test containers share machine IDs (images older than the machine-id fix: make images-rebuild)",
        machine_ids)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_server_sees_at_most_a_few_jobs_of_a_kind_start_in_one_minute(kind: str, next_starts: Starts):
    starts = {client: start for (client, of_kind), start in next_starts.items() if of_kind == kind}
    per_minute = collections.Counter(start // MINUTE for start in starts.values())
    assert max(per_minute.values()) <= MAX_STARTS_PER_MINUTE, sorted(starts.items(), key=lambda item: item[1])
    # Spread, not bunched: the clients' starts fall in more than a handful of different minutes.
    assert len(per_minute) >= len(CLIENTS) - MAX_STARTS_PER_MINUTE


def test_the_server_sees_at_most_a_few_jobs_of_all_kinds_start_in_one_minute(next_starts: Starts):
    # The kinds' windows [calendar time, + RandomizedDelaySec), which every timer has (the first test), share no time
    # of day: no minute holds jobs of two kinds, and the bound of one kind holds for all (compared by time of day: the
    # daily backups also run on the check's Sunday and the drill's Wednesday).
    windows = sorted((offset % DAY, offset % DAY + WINDOW, kind) for kind, (dummy, dummy, dummy, offset) in KINDS.items())
    for earlier, later in zip(windows, windows[1:]):
        assert earlier[1] <= later[0], windows
    # By minute of the day, which puts a weekly job beside every daily one of the same minute (more than the server
    # ever sees at once): a stricter count than the minutes of the next starts themselves.
    per_minute = collections.Counter((start % DAY) // MINUTE for start in next_starts.values())
    assert max(per_minute.values()) <= MAX_STARTS_PER_MINUTE, sorted(next_starts.items(), key=lambda item: item[1])
    assert len(per_minute) >= len(next_starts) - len(KINDS) * MAX_STARTS_PER_MINUTE


def test_the_server_s_maintenance_starts_in_no_minute_of_a_client_job(next_starts: Starts):
    """selfhost-backup-server-maintenance.timer: one job on the server (nothing to spread), at 05:00 with up to 10
    minutes of random delay (a new draw at each boot or reload: harmless for one timer), after the night's backups
    (00:00-01:00) and the Sunday checks' window (04:00-05:00), before the Wednesday drills' (05:30-06:30). No client
    job starts in its window."""
    shown = SERVER.ok(f"systemctl show -p RandomizedDelayUSec -p TimersCalendar {MAINTENANCE}")
    assert "RandomizedDelayUSec=10min" in shown and "OnCalendar=*-*-* 05:00:00 ;" in shown, shown
    listed = json.loads(SERVER.ok("systemctl list-timers --all --output=json"))
    start = next(int(timer["next"]) for timer in listed if timer["unit"] == MAINTENANCE)
    window = (5 * HOUR, 5 * HOUR + 10 * MINUTE)
    assert window[0] <= start % DAY < window[1], start
    inside = {key: value for key, value in next_starts.items() if window[0] <= value % DAY < window[1]}
    assert not inside, inside
