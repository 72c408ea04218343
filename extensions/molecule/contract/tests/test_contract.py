"""The generic contract test: every requester x provider pair through the same round trip on real hosts.

Per pair: write fixture rows with tricky values, back up (1 snapshot); change them, back up (2); destroy the
database; restore the 2nd by id (exactly state 2), the 1st by id (exactly state 1), latest (state 2); a
failing dump leaves the snapshot count unchanged; a truncated dump fed to the restore command exits non-zero
(and leaves the database as it was where the restore is atomic), by itself for each requester and as a
snapshot through each provider's restore script. Values are compared, not counts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time

import pytest

from conftest import SCENARIO_DIR, VARS, Box
from dialects import (STATE_1, STATE_2, Dialect, MariaDB, MariaDBDatabase, PostgresCluster, PostgresDatabase, SQLite,
                      expected)

DIALECTS: dict[str, Dialect] = {
    dialect.instance: dialect
    for dialect in (PostgresCluster(), PostgresDatabase(), MariaDB(), MariaDBDatabase(),
                    SQLite(VARS["contract_test_sqlite_path"], VARS["contract_test_sqlite_user"]))
}
# The snapshot ids in each provider's listing, oldest first.
SNAPSHOT_IDS = {
    "restic": re.compile(r"^([0-9a-f]{8})\s", re.M),
    "borg": re.compile(r"^(\S+@\S+-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})\s", re.M),
}
# One provider per requester and release, alternating, so that each requester and each provider runs on both
# releases: for the paths whose provider half does not depend on the requester, nor the requester half on the
# provider (the restore drills, restore --into), where every pair would only double the scenario's time.
ONE_PROVIDER_EACH = [(release, instance, ("restic", "borg")[(index + number) % 2])
                     for number, (release, instances) in enumerate(VARS["contract_test_requesters"].items())
                     for index, instance in enumerate(instances)]
# Every pair the hosts have: each request with both providers, but a request of contract_test_one_provider (on
# that release) only with the one ONE_PROVIDER_EACH picks (converge.yml hands it to that one alone).
CASES = [(release, instance, provider)
         for release, instances in VARS["contract_test_requesters"].items()
         for instance in instances
         for provider in ("restic", "borg")
         if instance not in VARS["contract_test_one_provider"].get(release, ())
         or (release, instance, provider) in ONE_PROVIDER_EACH]


def snapshots(box: Box, provider: str, instance: str) -> list[str]:
    return SNAPSHOT_IDS[provider].findall(box.ok(f"{provider}-restore-{instance} snapshots"))


def backup(box: Box, provider: str, instance: str):
    return box.run(f"systemctl start --wait {provider}-backup-{instance}.service")


def backup_ok(box: Box, provider: str, instance: str) -> None:
    result = backup(box, provider, instance)
    assert result.returncode == 0, box.journal(f"{provider}-backup-{instance}.service")


def restore(box: Box, provider: str, instance: str, which: str) -> None:
    result = box.run(f"{provider}-restore-{instance} restore {shlex.quote(which)}")
    assert result.returncode == 0, result.stderr.decode()[-3000:]


def request_of(box: Box, instance: str) -> dict:
    return json.loads(box.ok(f"cat {VARS['contract_test_requests_file']}"))[instance]


def as_user(request: dict, command: str) -> str:
    return f"cd / && runuser -u {request['user']} -- sh -c {shlex.quote(command)}"


@pytest.mark.parametrize("release, instance, provider", CASES, ids=["-".join(case) for case in CASES])
def test_round_trip(release: str, instance: str, provider: str):
    box = Box(f"contract-{release}")
    dialect = DIALECTS[instance]
    # Each pair has a repository of its own, so the first backup makes the first snapshot.
    dialect.write(box, STATE_1)
    assert dialect.read(box) == expected(STATE_1)
    backup_ok(box, provider, instance)
    first = snapshots(box, provider, instance)
    assert len(first) == 1

    dialect.write(box, STATE_2)
    backup_ok(box, provider, instance)
    both = snapshots(box, provider, instance)
    assert len(both) == 2 and both[0] == first[0]

    dialect.destroy(box)
    with pytest.raises((AssertionError, ValueError)):
        dialect.read(box)  # really gone

    restore(box, provider, instance, both[1])
    assert dialect.read(box) == expected(STATE_2)
    restore(box, provider, instance, both[0])
    assert dialect.read(box) == expected(STATE_1)
    restore(box, provider, instance, "latest")
    assert dialect.read(box) == expected(STATE_2)

    # A failing dump: the unit fails and no snapshot is added.
    dialect.break_dump(box)
    try:
        assert backup(box, provider, instance).returncode != 0
    finally:
        dialect.repair(box)
    assert snapshots(box, provider, instance) == both
    assert dialect.read(box) == expected(STATE_2)


@pytest.mark.parametrize("release, instance", sorted({case[:2] for case in CASES}),
                         ids=lambda value: value)
def test_truncated_dump_fails_the_restore(release: str, instance: str):
    box = Box(f"contract-{release}")
    dialect = DIALECTS[instance]
    request = request_of(box, instance)
    dialect.write(box, STATE_2)
    dump = box.run(as_user(request, request["backup_cmd"]))
    assert dump.returncode == 0, dump.stderr.decode()
    assert len(dump.stdout) > 500_000  # the large value is in it
    cuts = [len(dump.stdout) // 2, len(dump.stdout) - 40]
    if instance == "pg_cluster":
        # Right after the table row that reads like the dump's closing comment.
        row = b"\n-- PostgreSQL database cluster dump complete\n"
        assert dump.stdout.count(row) == 2, "the row and the real closing comment"
        cuts.append(dump.stdout.index(row) + len(row))
    for cut in cuts:
        result = box.run(as_user(request, request["restore_cmd"]), stdin=dump.stdout[:cut])
        assert result.returncode != 0, (cut, result.stderr.decode()[-2000:])
        if dialect.atomic_restore:
            assert dialect.read(box) == expected(STATE_2)
        elif instance in ("pg_cluster", "mariadb"):
            # It dropped or replaced what came before the cut: it says so.
            assert "partially restored: the restore failed while restoring database " in result.stderr.decode(), \
                (cut, result.stderr.decode()[-2000:])
    # The whole dump restores.
    result = box.run(as_user(request, request["restore_cmd"]), stdin=dump.stdout)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert dialect.read(box) == expected(STATE_2)


# Stores bytes as one more snapshot of an instance with the real tool, as the request's user, the way the job
# names and tags its own (so the restore script accepts it); prints the new snapshot's id.
STORE_DUMP = {
    "restic": (
        "export RESTIC_PASSWORD=\"$(cat /etc/selfhost-backup/restic/{instance}/passphrase)\" "
        "RESTIC_REPOSITORY=\"$(cat /etc/selfhost-backup/restic/{instance}/env.RESTIC_REPOSITORY)\" && "
        "host=\"$(grep -o -m1 -- '--host [^ )]*' /usr/local/bin/restic-restore-{instance} | head -n 1 | cut -d' ' -f2)\" && "
        "runuser -u {user} -- restic --no-cache --json backup --stdin --stdin-filename {backup_name} "
        "--tag selfhost-backup:{instance} --host \"$host\" | grep -o '\"snapshot_id\":\"[0-9a-f]\\{{8\\}}' | cut -d'\"' -f4"),
    "borg": (
        "export BORG_PASSPHRASE=\"$(cat /etc/selfhost-backup/borg/{instance}/passphrase)\" "
        "BORG_REPO=/srv/borg/{instance} BORG_BASE_DIR=/var/cache/borg-backup-{instance} && "
        "prefix=\"$(borg-restore-{instance} snapshots | sed -n 's/^\\({instance}@[^ ]*\\)-[0-9]\\{{4\\}}-[0-9-]*T.*/\\1/p' | head -n 1)\" && "
        "name=\"$prefix-$(date -u +%Y-%m-%dT%H:%M:%S.%6N)\" && "
        "runuser -u {user} -- borg create --stdin-name {backup_name} \"::$name\" - && echo \"$name\""),
}
FORGET = {
    "restic": ("RESTIC_PASSWORD=\"$(cat /etc/selfhost-backup/restic/{instance}/passphrase)\" "
               "RESTIC_REPOSITORY=\"$(cat /etc/selfhost-backup/restic/{instance}/env.RESTIC_REPOSITORY)\" "
               "runuser -u {user} -- restic --no-cache forget {snapshot}"),
    "borg": ("BORG_PASSPHRASE=\"$(cat /etc/selfhost-backup/borg/{instance}/passphrase)\" BORG_REPO=/srv/borg/{instance} "
             "BORG_BASE_DIR=/var/cache/borg-backup-{instance} runuser -u {user} -- borg delete \"::{snapshot}\""),
}


@pytest.mark.parametrize("release, instance, provider", CASES, ids=["-".join(case) for case in CASES])
def test_a_corrupt_snapshot_fails_the_restore_script(release: str, instance: str, provider: str):
    """A snapshot holding a truncated dump (as a dump cut short by a full disk would leave): the provider's
    restore script exits non-zero, and an atomic restore leaves the database as it was."""
    box = Box(f"contract-{release}")
    dialect = DIALECTS[instance]
    request = request_of(box, instance)
    before = snapshots(box, provider, instance)
    assert before, "runs after test_round_trip, whose latest snapshot is state 2"
    dump = box.run(as_user(request, request["backup_cmd"]))
    assert dump.returncode == 0, dump.stderr.decode()
    fields = {"instance": instance, "user": request["user"], "backup_name": shlex.quote(request["backup_name"])}
    corrupt = box.ok(STORE_DUMP[provider].format(**fields), stdin=dump.stdout[:len(dump.stdout) // 2]).strip()
    try:
        assert corrupt in snapshots(box, provider, instance)
        result = box.run(f"{provider}-restore-{instance} restore {shlex.quote(corrupt)}")
        assert result.returncode != 0, result.stderr.decode()[-2000:]
        assert f"restored {corrupt}" not in result.stderr.decode()
        if dialect.atomic_restore:
            assert dialect.read(box) == expected(STATE_2)
    finally:
        box.ok(FORGET[provider].format(snapshot=corrupt, **fields))
    assert snapshots(box, provider, instance) == before
    restore(box, provider, instance, "latest")
    assert dialect.read(box) == expected(STATE_2)


def _host_state(box: Box) -> str:
    return box.ok("ls -la --time-style=full-iso /srv/restic /etc/systemd/system /usr/local/bin /var/lib/selfhost-backup "
                  "/etc/selfhost-backup/restic; systemctl list-units --type=timer --all --plain --no-legend | awk '{print $1, $2, $3, $4}' | sort")


def test_one_local_repository_for_two_users_is_refused_and_changes_nothing():
    box = Box("contract-debian12")
    before = _host_state(box)
    run = subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", "contract-debian12",
         str(SCENARIO_DIR / "shared_repository.yml")], capture_output=True, text=True, check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert ("the local repository /srv/restic/shared-by-two is shared by instances whose requests run as different "
            "users (as_nobody: user nobody, as_postgres: user postgres)") in output, output
    assert "(rule: one user per repository)" in output, output
    assert "changed=0" in output, output
    assert VARS["contract_test_passphrase"] not in output
    assert _host_state(box) == before


BAD_REQUESTERS = [
    ("postgresql", {"postgresql_databasebackup_user": "nobody"}, "PostgreSQL is not reachable as nobody"),
    ("postgresql", {"postgresql_databasebackup_databases": ["fixture", "nope"]}, "nope not found in the cluster"),
    ("postgresql", {"postgresql_databasebackup_databases": ["bad name"]}, "postgresql_databasebackup_databases: every name"),
    ("mariadb", {"mariadb_databasebackup_user": "nobody"}, "MariaDB is not reachable as nobody"),
    ("mariadb", {"mariadb_databasebackup_databases": ["nope"]}, "nope not found"),
    ("mariadb", {"mariadb_databasebackup_option_file": "/etc/passwd"}, "must be an absolute path without"),
    ("sqlite", {"sqlite_databasebackup_paths": ["/var/lib/app/missing.db"]}, "/var/lib/app/missing.db is not a regular file"),
    ("sqlite", {"sqlite_databasebackup_paths": [{"path": VARS["contract_test_sqlite_path"], "user": "nobody"}]},
     "nobody cannot read /var/lib/app/fixture.db"),
    ("sqlite", {"sqlite_databasebackup_paths": ["relative.db"]}, "is not an absolute path"),
    # Drill checks that are not {database, query} ({query} for SQLite) of non-blank strings: the argument specs
    # stop the wrong shapes, the roles' own checks blank strings and the items of sqlite_databasebackup_paths.
    ("postgresql", {"postgresql_databasebackup_drill_checks": [{"database": "fixture"}]},
     "missing required arguments: query found in postgresql_databasebackup_drill_checks"),
    ("postgresql", {"postgresql_databasebackup_drill_checks": [{"database": "fixture", "query": " "}]},
     "postgresql_databasebackup_drill_checks: every item must be a dict with exactly the keys database and query, "
     "both non-blank strings"),
    ("mariadb", {"mariadb_databasebackup_drill_checks": ["SELECT 1"]},
     "Elements value for option 'mariadb_databasebackup_drill_checks' is of type str"),
    ("mariadb", {"mariadb_databasebackup_drill_checks": [{"database": "", "query": "SELECT 1"}]},
     "mariadb_databasebackup_drill_checks: every item must be a dict with exactly the keys database and query"),
    ("sqlite", {"sqlite_databasebackup_paths": [VARS["contract_test_sqlite_path"]],
                "sqlite_databasebackup_drill_checks": [{"database": "x", "query": "SELECT 1"}]},
     "sqlite_databasebackup_drill_checks.database. Supported parameters include: query."),
    ("sqlite", {"sqlite_databasebackup_paths": [{"path": VARS["contract_test_sqlite_path"], "drill_checks": [{"query": ""}]}]},
     "every item must be a dict with exactly the key query, a non-blank string"),
    ("sqlite", {"sqlite_databasebackup_paths": [{"path": VARS["contract_test_sqlite_path"], "drill_checks": "SELECT 1"}]},
     "every item must be a dict with exactly the key query, a non-blank string"),
    # The play without become (here: as nobody): said plainly, not "not reachable" or "Permission denied".
    *[(role, {"ansible_user": "nobody", "ansible_remote_tmp": "/tmp/contract-nobody",
              **({"sqlite_databasebackup_paths": [VARS["contract_test_sqlite_path"]]} if role == "sqlite" else {})},
       f"selfhost.backup.{role} must run as root: set become: true")
      for role in ("postgresql", "mariadb", "sqlite")],
]


def _requester_state(box: Box) -> str:
    return box.ok("ls -la --time-style=full-iso /usr/local/libexec /usr/local/bin /etc/systemd/system /var/lib/app")


@pytest.mark.parametrize("role, extra_vars, message", BAD_REQUESTERS, ids=[f"{case[0]}-{next(iter(case[1]))}-{index}"
                         for index, case in enumerate(BAD_REQUESTERS)])
def test_bad_requester_input_fails_clearly_and_changes_nothing(role: str, extra_vars: dict, message: str):
    box = Box("contract-debian13")
    # Without the helpers, as on a host the role never ran on: a bad run must not install them.
    box.ok("mv /usr/local/libexec/selfhost-backup /root/helpers.saved")
    try:
        before = _requester_state(box)
        run = subprocess.run(
            ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", "contract-debian13",
             "-e", f"contract_bad_role={role}", "-e", json.dumps(extra_vars), str(SCENARIO_DIR / "bad_requester.yml")],
            capture_output=True, text=True, check=False)
        after = _requester_state(box)
    finally:
        box.ok("rm -rf /usr/local/libexec/selfhost-backup /tmp/contract-nobody && "
               "mv /root/helpers.saved /usr/local/libexec/selfhost-backup")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert message in " ".join(output.split()), output
    assert "changed=0" in output, output
    assert after == before


def test_sqlite_dump_is_one_snapshot_while_a_writer_goes_on():
    """Every write inserts one row into each of two tables in one transaction: a dump that is not one read
    transaction sees more rows in the table it reads last."""
    box = Box("contract-debian13")
    path = shlex.quote(VARS["contract_test_sqlite_path"])
    sqlite = f"cd / && runuser -u {VARS['contract_test_sqlite_user']} -- sqlite3 -bail -batch -cmd '.timeout 10000' {path}"
    box.ok(sqlite, b"PRAGMA journal_mode=WAL; DROP TABLE IF EXISTS a; DROP TABLE IF EXISTS b;"
                   b"CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT);")
    # The writer goes on until the backup is done and a moment longer.
    writer = ("rm -f /tmp/writer.stop; until [ -e /tmp/writer.stop ]; do "
              f"{sqlite} \"BEGIN IMMEDIATE; INSERT INTO a(v) VALUES (hex(randomblob(2000))); "
              "INSERT INTO b(v) VALUES (hex(randomblob(2000))); COMMIT;\" || exit 1; done")
    box.ok(f"nohup bash -c {shlex.quote(writer)} >/tmp/writer.log 2>&1 & echo $! >/tmp/writer.pid")
    try:
        box.ok("sleep 3")
        backup_ok(box, "restic", "sqlite")
        box.ok("sleep 2")
    finally:
        box.run("touch /tmp/writer.stop; while kill -0 $(cat /tmp/writer.pid) 2>/dev/null; do sleep 0.5; done")
    assert box.ok("cat /tmp/writer.log").strip() == ""
    written = int(box.ok(f"{sqlite} 'SELECT count(*) FROM a'"))
    restore(box, "restic", "sqlite", "latest")
    a, b = box.ok(f"{sqlite} 'SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)'").strip().split("|")
    assert int(a) == int(b) > 0, (a, b)
    assert int(a) < written  # the writer went on after the snapshot: it was taken while writes went on
    assert box.ok(f"{sqlite} 'PRAGMA integrity_check'").strip() == "ok"


def test_globals_restore_onto_a_live_cluster():
    """Roles and their attributes come back; roles that own databases are neither dropped nor in the way."""
    box = Box("contract-debian13")
    helper = "/usr/local/libexec/selfhost-backup/postgresql-databasebackup"
    psql = "cd / && runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d postgres"
    box.ok(psql, b"CREATE ROLE contract_owner LOGIN; CREATE DATABASE contract_owned OWNER contract_owner;"
                 b"CREATE ROLE contract_extra NOLOGIN CONNECTION LIMIT 3;")
    try:
        dump = box.run(f"cd / && runuser -u postgres -- {helper} dump globals")
        assert dump.returncode == 0, dump.stderr.decode()
        box.ok(psql, b"DROP ROLE contract_extra;")
        result = box.run(f"cd / && runuser -u postgres -- {helper} restore globals", stdin=dump.stdout)
        assert result.returncode == 0, result.stderr.decode()
        assert box.ok(psql, b"SELECT rolname, rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname LIKE 'contract_%' "
                            b"ORDER BY 1;").split() == ["contract_extra|f|3", "contract_owner|t|-1"]
        truncated = box.run(f"cd / && runuser -u postgres -- {helper} restore globals", stdin=dump.stdout[:-60])
        assert truncated.returncode != 0
    finally:
        box.ok(psql, b"DROP DATABASE IF EXISTS contract_owned; DROP ROLE IF EXISTS contract_owner;"
                     b"DROP ROLE IF EXISTS contract_extra;")


def test_postgresql_globals_drill():
    """The globals request's drill: roles restored into a scratch cluster (a check sees them there), a cut dump
    fails, the live cluster's roles are as they were."""
    box = Box("contract-debian13")
    helper = "/usr/local/libexec/selfhost-backup/postgresql-databasebackup"
    psql = "cd / && runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d postgres"
    box.ok(psql, b"CREATE ROLE contract_drill NOLOGIN CONNECTION LIMIT 4;")
    try:
        dump = box.run(f"cd / && runuser -u postgres -- {helper} dump globals")
        assert dump.returncode == 0, dump.stderr.decode()
        box.ok(psql, b"DROP ROLE contract_drill;")
        roles = box.ok(psql, b"SELECT rolname FROM pg_roles ORDER BY 1;")
        scratch = _scratch(box)
        check = "SELECT rolconnlimit = 4 FROM pg_roles WHERE rolname = 'contract_drill'"
        result = box.run(f"cd / && runuser -u postgres -- {helper} drill --check postgres {shlex.quote(check)} globals",
                         stdin=dump.stdout)
        assert result.returncode == 0, result.stderr.decode()
        assert f"drill check passed in database postgres: {check}" in result.stderr.decode()
        cut = box.run(f"cd / && runuser -u postgres -- {helper} drill globals", stdin=dump.stdout[:-60])
        assert cut.returncode != 0 and "the dump is incomplete" in cut.stderr.decode(), cut.stderr.decode()
        assert box.ok(psql, b"SELECT rolname FROM pg_roles ORDER BY 1;") == roles  # not restored in the live cluster
        assert _scratch(box) == scratch
    finally:
        box.ok(psql, b"DROP ROLE IF EXISTS contract_drill;")


def test_mariadb_with_a_password_in_an_option_file():
    """The role accepts an option file its user owns alone; the dump logs in with it, the password in no argv."""
    box = Box("contract-debian13")
    user, option_file = VARS["contract_test_mariadb_password_user"], "/etc/contract-mariadb-backup.cnf"
    run = subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", "contract-debian13",
         "-e", "contract_bad_role=mariadb", "-e", json.dumps({"mariadb_databasebackup_user": user,
                                                              "mariadb_databasebackup_option_file": option_file,
                                                              "mariadb_databasebackup_databases": ["fixture"]}),
         str(SCENARIO_DIR / "bad_requester.yml")], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    helper = f"/usr/local/libexec/selfhost-backup/mariadb-databasebackup --option-file {option_file}"
    seen = box.ok(f"(cd / && runuser -u {user} -- {helper} --compression gzip dump --databases fixture "
                  "> /tmp/pw.sql.gz &) ; for i in $(seq 1 10); do ps -eo args; sleep 0.1; done; sleep 2")
    assert VARS["contract_test_mariadb_password"] not in seen
    dump = box.ok("gzip -dc /tmp/pw.sql.gz")
    assert "CREATE TABLE `t`" in dump and dump.rstrip().splitlines()[-1].startswith("-- Dump completed")
    # Without the option file the user has no way in.
    assert box.run(f"cd / && runuser -u {user} -- /usr/local/libexec/selfhost-backup/mariadb-databasebackup "
                   "dump --databases fixture").returncode != 0


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_requests_round_trip(compression: str):
    """The seed's form, compression in the request, as an option: dump and restore through the helper."""
    box = Box("contract-debian13")
    dialect = DIALECTS["pg_db"]
    helper = f"/usr/local/libexec/selfhost-backup/postgresql-databasebackup --compression {compression}"
    dialect.write(box, STATE_1)
    dump = box.run(f"cd / && runuser -u postgres -- {helper} dump database fixture")
    assert dump.returncode == 0, dump.stderr.decode()
    magic = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}[compression]
    assert dump.stdout.startswith(magic)
    dialect.write(box, STATE_2)
    restored = box.run(f"cd / && runuser -u postgres -- {helper} restore database fixture", stdin=dump.stdout)
    assert restored.returncode == 0, restored.stderr.decode()
    assert dialect.read(box) == expected(STATE_1)
    assert box.run(f"cd / && runuser -u postgres -- {helper} restore database fixture",
                   stdin=dump.stdout[: len(dump.stdout) // 2]).returncode != 0
    assert dialect.read(box) == expected(STATE_1)


# Other sessions on the databases a restore replaces (issue 15, item 5). A database the dumps hold before
# fixture (names sort), so a restore that went ahead would replace it before it reached the busy one.
EARLY_DATABASE = "contract_early"
# The fixture rows without the large value: these tests are about sessions, the round trip covers the values.
SMALL_1 = [row for row in STATE_1 if row[0] != 6]
SMALL_2 = [row for row in STATE_2 if row[0] != 6]
BUSY = "contract_busy"
PSQL = "cd / && runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d"


def _wait_for(box: Box, command: str) -> str:
    """Polls a command until it prints something (a session showing up), at most 20 s."""
    output = box.ok(f"for i in $(seq 1 40); do out=\"$({command})\"; [ -n \"$out\" ] && break; sleep 0.5; done; "
                    "printf '%s' \"$out\"")
    assert output.strip(), command
    return output.strip()


def _pg_early(box: Box) -> list[str]:
    return box.ok(f"{PSQL} {EARLY_DATABASE} -c 'SELECT v FROM early ORDER BY v'").splitlines()


def _pg_databases(box: Box) -> list[str]:
    return box.ok(f"{PSQL} postgres -c 'SELECT datname FROM pg_database ORDER BY 1'").split()


def _pg_hold(box: Box) -> str:
    """A session on fixture in an open transaction that read its table (as an application would leave it);
    returns its pid."""
    box.ok(f"cd / && (nohup runuser -u postgres -- env PGAPPNAME={BUSY} psql -X -q -d fixture "
           "-c 'BEGIN; SELECT count(*) FROM fixture; SELECT pg_sleep(600)' >/dev/null 2>&1 &)")
    return _wait_for(box, f"{PSQL} postgres -c \"SELECT pid FROM pg_stat_activity WHERE application_name = '{BUSY}'\"")


def _pg_busy(box: Box) -> str:
    return box.ok(f"{PSQL} postgres -c \"SELECT pid FROM pg_stat_activity WHERE application_name = '{BUSY}'\"").strip()


@pytest.mark.parametrize("release", sorted(VARS["contract_test_requesters"]))
def test_postgresql_restore_stops_for_other_sessions_or_ends_them(release: str):
    """With a session open on fixture, restore latest (whole cluster and one database, through the providers)
    fails naming it and changes nothing, not even the database the dump drops before fixture; the requests made
    with postgresql_databasebackup_terminate_sessions end the session and restore the dump."""
    box = Box(f"contract-{release}")
    dialect = DIALECTS["pg_cluster"]
    requests = json.loads(box.ok(f"cat {VARS['contract_test_requests_file']}"))
    box.ok(f"{PSQL} postgres", f"DROP DATABASE IF EXISTS {EARLY_DATABASE}; CREATE DATABASE {EARLY_DATABASE};".encode())
    try:
        box.ok(f"{PSQL} {EARLY_DATABASE}", b"CREATE TABLE early (v text); INSERT INTO early VALUES ('backed up');")
        dialect.write(box, SMALL_1)
        backup_ok(box, "restic", "pg_cluster")
        backup_ok(box, "borg", "pg_db")
        cluster_dump = box.run(as_user(requests["pg_cluster"], requests["pg_cluster"]["backup_cmd"]))
        database_dump = box.run(as_user(requests["pg_db"], requests["pg_db"]["backup_cmd"]))
        assert cluster_dump.returncode == 0 and database_dump.returncode == 0
        dialect.write(box, SMALL_2)
        box.ok(f"{PSQL} {EARLY_DATABASE}", b"UPDATE early SET v = 'changed since';")
        databases = _pg_databases(box)
        assert EARLY_DATABASE in databases

        pid = _pg_hold(box)
        for command in ("restic-restore-pg_cluster restore latest", "borg-restore-pg_db restore latest"):
            result = box.run(command, timeout=120)
            stderr = result.stderr.decode()
            assert result.returncode != 0, stderr
            assert f"fixture (pid {pid}, user postgres, application {BUSY}, client local, " in stderr, stderr
            assert "stopped before it changed anything" in stderr and "partially restored" not in stderr, stderr
            assert dialect.read(box) == expected(SMALL_2)
            assert _pg_early(box) == ["changed since"]
            assert _pg_databases(box) == databases
            assert _pg_busy(box) == pid

        # One database, as the role publishes it with the option: the session ends, the dump is restored.
        request = requests["pg_db_terminate"]
        result = box.run(as_user(request, request["restore_cmd"]), stdin=database_dump.stdout, timeout=120)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert f"ending the other sessions on databases the restore replaces: fixture (pid {pid}," in result.stderr.decode()
        assert dialect.read(box) == expected(SMALL_1)
        box.ok(f"for i in $(seq 1 20); do [ -z \"$({PSQL} postgres -c \"SELECT pid FROM pg_stat_activity WHERE "
               f"application_name = '{BUSY}'\")\" ] && exit 0; sleep 0.5; done; exit 1")

        # The whole cluster.
        dialect.write(box, SMALL_2)
        pid = _pg_hold(box)
        request = requests["pg_cluster_terminate"]
        result = box.run(as_user(request, request["restore_cmd"]), stdin=cluster_dump.stdout, timeout=120)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert f"fixture (pid {pid}, user postgres, application {BUSY}," in result.stderr.decode()
        assert dialect.read(box) == expected(SMALL_1)
        assert _pg_early(box) == ["backed up"]
        assert _pg_busy(box) == ""
    finally:
        box.ok(f"{PSQL} postgres -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{BUSY}'\" "
               f"-c 'DROP DATABASE IF EXISTS {EARLY_DATABASE} WITH (FORCE)'")


def test_postgresql_cluster_restore_failing_half_way_says_partially_restored():
    """A dump that fails after the restore dropped the databases: the restore exits non-zero and says what it left."""
    box = Box("contract-debian13")
    dialect = DIALECTS["pg_cluster"]
    request = request_of(box, "pg_cluster")
    dialect.write(box, SMALL_1)
    dump = box.run(as_user(request, request["backup_cmd"]))
    assert dump.returncode == 0
    assert dump.stdout.count(b"\n\\connect fixture\n") == 1
    broken = dump.stdout.replace(b"\n\\connect fixture\n", b"\n\\connect fixture\nSELECT 1 / 0;\n")
    result = box.run(as_user(request, request["restore_cmd"]), stdin=broken)
    stderr = result.stderr.decode()
    assert result.returncode != 0, stderr
    assert "division by zero" in stderr
    assert "partially restored: the restore failed while restoring database fixture (the error is above), after it " \
           "had started dropping the databases of the dump; missing now: none; present (restored, half restored or " \
           "not reached): fixture, postgres, template1. Restore again" in " ".join(stderr.split()), stderr
    with pytest.raises(AssertionError):
        dialect.read(box)  # fixture was dropped and created again, its table not yet
    result = box.run(as_user(request, request["restore_cmd"]), stdin=dump.stdout)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert dialect.read(box) == expected(SMALL_1)


MARIADB = "mariadb --batch --skip-column-names"


def _mariadb_early(box: Box) -> list[str]:
    return box.ok(f"{MARIADB} -e 'SELECT v FROM {EARLY_DATABASE}.early ORDER BY v'").splitlines()


def _mariadb_hold(box: Box, sql: str) -> str:
    """A session that runs sql and then sleeps (marked by the alias {BUSY}); returns its connection id."""
    box.ok(f"(nohup mariadb -e {shlex.quote(sql + f'; SELECT SLEEP(600) AS {BUSY}')} >/dev/null 2>&1 &)")
    return _wait_for(box, f"{MARIADB} -e \"SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                          f"'%AS {BUSY}' AND ID <> CONNECTION_ID()\"")


def _mariadb_busy(box: Box) -> str:
    return box.ok(f"{MARIADB} -e \"SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS {BUSY}' "
                  "AND ID <> CONNECTION_ID()\"").strip()


def _mariadb_release(box: Box) -> None:
    box.ok(f"for id in $({MARIADB} -e \"SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS {BUSY}' "
           f"AND ID <> CONNECTION_ID()\"); do mariadb -e \"KILL $id\" || true; done")


def test_mariadb_restore_stops_for_other_sessions_or_ends_them():
    """A session in a transaction that read fixture's table holds a metadata lock: restore latest fails naming it
    (it used to replace the databases before fixture, then wait a day for the lock) and changes nothing; the
    request made with mariadb_databasebackup_terminate_sessions ends the session and restores the dump."""
    box = Box("contract-debian13")
    dialect = DIALECTS["mariadb"]
    requests = json.loads(box.ok(f"cat {VARS['contract_test_requests_file']}"))
    box.ok(f"mariadb -e \"DROP DATABASE IF EXISTS {EARLY_DATABASE}; CREATE DATABASE {EARLY_DATABASE}; "
           f"CREATE TABLE {EARLY_DATABASE}.early (v VARCHAR(40)) ENGINE=InnoDB; "
           f"INSERT INTO {EARLY_DATABASE}.early VALUES ('backed up')\"")
    try:
        dialect.write(box, SMALL_1)
        backup_ok(box, "restic", "mariadb")
        dump = box.run(as_user(requests["mariadb"], requests["mariadb"]["backup_cmd"]))
        assert dump.returncode == 0
        dialect.write(box, SMALL_2)
        box.ok(f"mariadb -e \"UPDATE {EARLY_DATABASE}.early SET v = 'changed since'\"")

        session = _mariadb_hold(box, "USE fixture; BEGIN; SELECT COUNT(*) FROM t")
        result = box.run("restic-restore-mariadb restore latest", timeout=120)
        stderr = " ".join(result.stderr.decode().split())
        assert result.returncode != 0, stderr
        assert f"other sessions use databases it would replace: fixture (id {session}, user root@localhost, " \
               "Query, in a transaction since " in stderr, stderr
        assert "stopped before it changed anything" in stderr and "partially restored" not in stderr, stderr
        assert dialect.read(box) == expected(SMALL_2)
        assert _mariadb_early(box) == ["changed since"]
        assert _mariadb_busy(box) == session

        request = requests["mariadb_terminate"]
        result = box.run(as_user(request, request["restore_cmd"]), stdin=dump.stdout, timeout=120)
        stderr = " ".join(result.stderr.decode().split())
        assert result.returncode == 0, stderr
        assert f"ending the other sessions on databases the restore replaces: fixture (id {session}, " in stderr, stderr
        assert dialect.read(box) == expected(SMALL_1)
        assert _mariadb_early(box) == ["backed up"]
        assert _mariadb_busy(box) == ""
    finally:
        _mariadb_release(box)
        box.ok(f"mariadb -e 'DROP DATABASE IF EXISTS {EARLY_DATABASE}'")


def test_mariadb_restore_never_waits_without_end_and_says_partially_restored():
    """A global read lock (as a backup tool takes it) is held by no database, transaction or table: the restore
    fails within its lock wait timeout instead of waiting a day. A dump that fails half way says what it left."""
    box = Box("contract-debian13")
    dialect = DIALECTS["mariadb"]
    request = request_of(box, "mariadb")
    dialect.write(box, SMALL_1)
    dump = box.run(as_user(request, request["backup_cmd"]))
    assert dump.returncode == 0
    _mariadb_hold(box, "FLUSH TABLES WITH READ LOCK")
    try:
        started = time.monotonic()
        result = box.run(as_user(request, request["restore_cmd"] + " --lock-wait-timeout 3"), stdin=dump.stdout,
                         timeout=120)
        stderr = " ".join(result.stderr.decode().split())
        assert result.returncode != 0, stderr
        assert time.monotonic() - started < 30
        assert "Lock wait timeout exceeded" in stderr and "partially restored: the restore failed" in stderr, stderr
    finally:
        _mariadb_release(box)

    assert b"\nUSE `mysql`;\n" in dump.stdout
    broken = dump.stdout.replace(b"\nUSE `mysql`;\n", b"\nUSE `mysql`;\nSELECT 1 FROM contract_nowhere;\n", 1)
    dialect.write(box, SMALL_2)
    result = box.run(as_user(request, request["restore_cmd"]), stdin=broken)
    stderr = " ".join(result.stderr.decode().split())
    assert result.returncode != 0, stderr
    assert "partially restored: the restore failed while restoring database mysql (the error is above); databases " \
           "restored before it: fixture; the ones after it in the dump are as they were." in stderr, stderr
    assert dialect.read(box) == expected(SMALL_1)  # fixture came before the failure
    result = box.run(as_user(request, request["restore_cmd"]), stdin=dump.stdout)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


# Restore drills (issue 17): each request's drill_cmd restores a dump into a scratch copy of its own, runs the
# checks there and removes the copy. Compared around each drill: the live database's values, its databases, and
# what /tmp and the process table hold (the scratch directory, its socket, its server).
DRILL_QUERIES = {"pg_cluster": VARS["contract_test_drill_checks"]["postgresql"],
                 "pg_db": VARS["contract_test_drill_checks"]["postgresql"],
                 "mariadb": VARS["contract_test_drill_checks"]["mariadb"],
                 "mariadb_db": VARS["contract_test_drill_checks"]["mariadb"],
                 "sqlite": VARS["contract_test_drill_checks"]["sqlite"]}
# The live server's list of databases, where there is one.
LIVE_DATABASES = {"pg_cluster": f"{PSQL} postgres -c 'SELECT datname FROM pg_database ORDER BY 1'",
                  "pg_db": f"{PSQL} postgres -c 'SELECT datname FROM pg_database ORDER BY 1'",
                  "mariadb": "mariadb --batch --skip-column-names -e 'SHOW DATABASES'",
                  "mariadb_db": "mariadb --batch --skip-column-names -e 'SHOW DATABASES'",
                  "sqlite": "true"}


def _scratch(box: Box) -> str:
    """What a drill may leave: entries of /tmp (its directory, a socket, a restore's work file), and processes
    that belong to a drill (its server's data directory is in the scratch directory)."""
    return box.ok("ls -A /tmp; ps -eo pid=,args= | grep -e selfhost-backup-drill -e 'mariadbd --no-defaults' "
                  "| grep -v -e grep -e 'ps -eo' || true")


def _live(box: Box, dialect: Dialect, instance: str) -> tuple:
    return dialect.read(box), box.ok(LIVE_DATABASES[instance])


def _drill(box: Box, request: dict, dump: bytes, command: str | None = None) -> tuple[int, str]:
    result = box.run(as_user(request, command or request["drill_cmd"]), stdin=dump, timeout=600)
    # A cut dump can end inside a UTF-8 character, and the helper's error may quote that line.
    return result.returncode, " ".join(result.stderr.decode(errors="replace").split())


@pytest.mark.parametrize("release, instance", sorted({case[:2] for case in CASES}), ids=lambda value: value)
def test_drill_restores_into_a_scratch_copy_and_fails_on_a_cut_dump_or_a_false_check(release: str, instance: str):
    box = Box(f"contract-{release}")
    dialect = DIALECTS[instance]
    request = request_of(box, instance)
    query = " ".join(DRILL_QUERIES[instance].split())
    dialect.write(box, STATE_1)
    state_1 = box.run(as_user(request, request["backup_cmd"]))
    assert state_1.returncode == 0, state_1.stderr.decode()
    dialect.write(box, STATE_2)
    state_2 = box.run(as_user(request, request["backup_cmd"]))
    assert state_2.returncode == 0, state_2.stderr.decode()
    # Something else in the live database, so a drill that went there would show.
    dialect.write(box, SMALL_1)
    live = _live(box, dialect, instance)
    scratch = _scratch(box)

    # State 1 restores, and the role's check (row 5 is there) passes.
    rc, stderr = _drill(box, request, state_1.stdout)
    assert rc == 0, stderr
    assert f"drill check passed{' in database fixture' if instance != 'sqlite' else ''}: {query}" in stderr, stderr
    assert "drill passed: " in stderr
    assert _live(box, dialect, instance) == live
    assert _scratch(box) == scratch

    # State 2 restores too, but its row 5 is gone: the check fails the drill, named.
    rc, stderr = _drill(box, request, state_2.stdout)
    assert rc != 0, stderr
    assert f"returned '{'f' if instance.startswith('pg') else '0'}', not true: {query}" in stderr, stderr
    assert _live(box, dialect, instance) == live
    assert _scratch(box) == scratch

    # A cut dump fails, whatever the checks.
    dump = state_1.stdout
    for cut in (len(dump) // 2, len(dump) - 40):
        rc, stderr = _drill(box, request, dump[:cut])
        assert rc != 0, (cut, stderr)
        assert "drill failed: the dump" in stderr, (cut, stderr)
        assert "drill check passed" not in stderr
        assert _live(box, dialect, instance) == live
        assert _scratch(box) == scratch


@pytest.mark.parametrize("instance", ["pg_cluster", "mariadb", "sqlite"])
def test_drill_stopped_midway_removes_its_scratch_copy(instance: str):
    """TERM to the drill's process group (as systemd stops a unit) while it waits for the rest of the dump: its
    server stops and its directory goes, the live database is as it was."""
    box = Box("contract-debian13")
    dialect = DIALECTS[instance]
    request = request_of(box, instance)
    dialect.write(box, SMALL_2)
    dump = box.run(as_user(request, request["backup_cmd"]))
    assert dump.returncode == 0
    live = _live(box, dialect, instance)
    scratch = _scratch(box)
    half = len(dump.stdout) // 2
    # The drill reads half the dump and then waits for more, in a session of its own.
    box.ok(f"head -c {half} > /root/drill-half.sql", stdin=dump.stdout)
    # setpriv, as a provider's unit runs it: runuser would SIGKILL the helper 2 s after a TERM.
    user = request["user"]
    pipeline = (f"cd / && (cat /root/drill-half.sql; sleep 600) | setpriv --reuid={user} --regid=$(id -g {user}) "
                f"--init-groups sh -c {shlex.quote(request['drill_cmd'])}")
    box.ok(f"setsid bash -c {shlex.quote(pipeline)} </dev/null >/root/drill.out 2>&1 & echo $! >/root/drill.pid")
    try:
        # Its scratch directory, and the process of its server, are there.
        wanted = {"sqlite": "ls /tmp | grep -q '^selfhost-backup-drill[.]'",
                  "pg_cluster": "ps -eo args= | grep -q '^postgres -D /tmp/selfhost-backup-drill[.]'",
                  "mariadb": "ps -eo args= | grep -q 'mariadbd --no-defaults .*/tmp/selfhost-backup-drill[.]'"}[instance]
        box.ok(f"for i in $(seq 1 120); do {wanted} && exit 0; sleep 0.5; done; exit 1")
    finally:
        box.run("kill -TERM -- -\"$(ps -o pgid= -p \"$(cat /root/drill.pid)\" | tr -d ' ')\"")
    # The whole session must be gone, not only its first shell (which TERM ends at once): the helper stops its
    # server and removes its directory before it exits, which takes a while on a loaded host.
    box.ok("pgid=\"$(cat /root/drill.pid)\"; for i in $(seq 1 240); do pgrep -g \"$pgid\" >/dev/null || exit 0; "
           "sleep 0.5; done; exit 1")
    assert _scratch(box) == scratch, box.ok("cat /root/drill.out")
    assert _live(box, dialect, instance) == live


# restore --into (restore_into_cmd) and --database (restore_database_cmd) through each provider's restore script.
# The copy's name: a database of the same server, or for SQLite a file beside the database.
INTO = {"pg_cluster": "fixture_copy", "pg_db": "fixture-copy.1", "mariadb_db": "fixture_copy",
        "sqlite": "/var/lib/app/fixture-copy.db"}
INTO_CASES = [case for case in ONE_PROVIDER_EACH if case[1] in INTO]


@pytest.mark.parametrize("release, instance, provider", INTO_CASES, ids=["-".join(case) for case in INTO_CASES])
def test_restore_into_another_target_leaves_the_original_untouched(release: str, instance: str, provider: str):
    """The snapshot holds state 1, the database has moved on to state 2: restore latest --into a new name gives a
    copy equal to state 1 value by value, and the original still holds state 2. A copy that exists is never
    replaced, and a name with quotes, $ or backticks is refused before anything runs. For the whole-cluster request
    it takes --database (the one database out of the cluster dump)."""
    box = Box(f"contract-{release}")
    dialect, into = DIALECTS[instance], INTO[instance]
    copy = dialect.at(into)
    dialect.remove(box, into)
    dialect.write(box, STATE_1)
    backup_ok(box, provider, instance)
    # The backup's journal: one readable summary line, not the tool's JSON (that is in the cache directory).
    journal = box.journal(f"{provider}-backup-{instance}.service")
    assert re.search(rf"{provider}-restore-{instance}: backup of instance {instance}: (snapshot|archive) \S+, "
                     r"[\d.]+ ?[KMGT]?i?B read, [\d.]+ ?[KMGT]?i?B added, (\d+h)?(\d+m)?\d+s$", journal, re.M), journal
    # (restic's own error messages of a failed backup, which the round trip provokes, are JSON and stay.)
    assert '"message_type":"summary"' not in journal and '"deduplicated_size"' not in journal, journal
    dialect.write(box, STATE_2)
    database = "--database fixture " if instance == "pg_cluster" else ""
    command = f"{provider}-restore-{instance} restore latest {database}--into {shlex.quote(into)}"
    try:
        result = box.run(command)
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert copy.read(box) == expected(STATE_1)
        assert dialect.read(box) == expected(STATE_2)
        # Again: the copy exists, and is neither replaced nor changed.
        dialect.write(box, STATE_2)
        again = box.run(command)
        assert again.returncode != 0 and "never replaces one" in again.stderr.decode(), again.stderr.decode()[-2000:]
        assert copy.read(box) == expected(STATE_1)
        for hostile in ("x'; DROP DATABASE fixture; --", "x$(touch /tmp/owned)", "x`touch /tmp/owned`"):
            refused = box.run(f"{provider}-restore-{instance} restore latest {database}--into {shlex.quote(hostile)}")
            assert refused.returncode == 2 and "is not a name it takes" in refused.stderr.decode()
        assert box.run("test -e /tmp/owned").returncode != 0
        assert dialect.read(box) == expected(STATE_2)
    finally:
        dialect.remove(box, into)


# A per-database dump restored --into keeps the source database's encoding and locale (the dump's own CREATE
# DATABASE), not the cluster's defaults. The request's database fixture is made LATIN1 with the C locale for this test
# and made again as the converge makes it afterwards.
LATIN_VALUES = ["caf\u00e9", "\u00c9t\u00e9 \u00e0 l'h\u00f4tel", "na\u00efve \u00fc\u00df \u00f1", "Zebra", "apple",
                "\u00e5ngstr\u00f6m \u00b5 \u00b0 \u00bd \u00ff", "quotes ' \" ` \\ $HOME"]
PG_ATTRIBUTES = ("SELECT pg_encoding_to_char(encoding) || '|' || datcollate || '|' || datctype || '|' || datlocprovider::text "
                 "FROM pg_database WHERE datname = :'name'")
PG_CASES = [case for case in INTO_CASES if case[1] == "pg_db"]


def _pg(box: Box, database: str, sql: str, **variables: str) -> str:
    names = " ".join(f"-v {key}={shlex.quote(value)}" for key, value in variables.items())
    return box.ok(f"cd / && PGCLIENTENCODING=UTF8 runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 {names} "
                  f"-d {shlex.quote(database)}", sql.encode())


@pytest.mark.parametrize("release, instance, provider", PG_CASES, ids=["-".join(case) for case in PG_CASES])
def test_restore_into_keeps_the_databases_encoding_and_locale(release: str, instance: str, provider: str):
    box = Box(f"contract-{release}")
    into = "fixture_latin_copy"
    DIALECTS[instance].remove(box, into)
    box.ok("cd / && runuser -u postgres -- dropdb --force fixture && "
           "runuser -u postgres -- createdb --template=template0 --encoding=LATIN1 --lc-collate=C --lc-ctype=C fixture")
    try:
        values = ", ".join(f"({i}, convert_from('\\x{v.encode().hex()}'::bytea, 'UTF8'))" for i, v in enumerate(LATIN_VALUES))
        _pg(box, "fixture", f"CREATE TABLE latin (id int PRIMARY KEY, v text); INSERT INTO latin VALUES {values};")
        backup_ok(box, provider, instance)
        _pg(box, "fixture", "INSERT INTO latin VALUES (100, 'after the backup \u00e9');")
        # Refused before the repository is opened: the request's own database, a system database.
        for name, reason in (("fixture", "that is the database of this request"),
                             ("template1", "a system database is never restored alone")):
            refused = box.run(f"{provider}-restore-{instance} restore latest --into {name}")
            assert refused.returncode == 1, refused.stderr.decode()
            assert reason in refused.stderr.decode() and "before the repository was opened" in refused.stderr.decode()
        result = box.run(f"{provider}-restore-{instance} restore latest --into {into}")
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert _pg(box, "postgres", PG_ATTRIBUTES + ";", name=into) == _pg(box, "postgres", PG_ATTRIBUTES + ";", name="fixture") \
            == "LATIN1|C|C|c\n"
        # Value by value, by id and in the collation's order; the original keeps the row written after the backup.
        for order in ("id", "v"):
            copied = json.loads(_pg(box, into, f"SELECT json_agg(v ORDER BY {order}) FROM latin;"))
            assert copied == [LATIN_VALUES[i] for i in json.loads(_pg(box, into, f"SELECT json_agg(id ORDER BY {order}) FROM latin;"))]
        assert json.loads(_pg(box, into, "SELECT json_agg(v ORDER BY id) FROM latin;")) == LATIN_VALUES
        assert json.loads(_pg(box, "fixture", "SELECT json_agg(v ORDER BY id) FROM latin;")) == \
            LATIN_VALUES + ["after the backup \u00e9"]
    finally:
        DIALECTS[instance].remove(box, into)
        box.ok("cd / && runuser -u postgres -- dropdb --force fixture && runuser -u postgres -- createdb fixture")


MARIADB_SEVERAL = [case for case in ONE_PROVIDER_EACH if case[1] == "mariadb"]


@pytest.mark.parametrize("release, instance, provider", MARIADB_SEVERAL, ids=["-".join(case) for case in MARIADB_SEVERAL])
def test_one_database_of_a_mariadb_dump_of_several_is_refused_naming_why(release: str, instance: str, provider: str):
    """A request of several MariaDB databases refuses --database and --into, naming why, before the repository is
    opened; the database is untouched."""
    box = Box(f"contract-{release}")
    dialect = DIALECTS[instance]
    dialect.write(box, STATE_1)
    for args in ("--database fixture", "--database fixture --into fixture_copy", "--into fixture_copy"):
        refused = box.run(f"{provider}-restore-{instance} restore latest {args}")
        stderr = refused.stderr.decode()
        assert refused.returncode == 1, stderr
        assert "holds several MariaDB databases, and one is not restored out of it alone" in stderr, stderr
        assert "before the repository was opened" in stderr, stderr
    assert dialect.read(box) == expected(STATE_1)
    assert box.run("mariadb -N -B -e \"SHOW DATABASES LIKE 'fixture_copy'\"").stdout.strip() == b""


@pytest.mark.parametrize("release, provider", sorted({(case[0], case[2]) for case in CASES}), ids="-".join)
def test_one_database_out_of_the_cluster_dump_leaves_the_others_untouched(release: str, provider: str):
    """restore --database fixture of the whole-cluster request puts the database fixture back as it was in the
    snapshot, in its place; a database made after the backup (a cluster restore would drop it) and the postgres
    database keep what they have."""
    box = Box(f"contract-{release}")
    dialect = DIALECTS["pg_cluster"]
    bystander = PostgresCluster().at("bystander")
    bystander.remove(box, "bystander")
    dialect.write(box, STATE_1)
    backup_ok(box, provider, "pg_cluster")
    dialect.write(box, STATE_2)
    box.ok("cd / && runuser -u postgres -- createdb bystander")
    bystander.write(box, STATE_2)
    marker = "CREATE TABLE IF NOT EXISTS one_database_marker (v text); DELETE FROM one_database_marker;" \
             "INSERT INTO one_database_marker VALUES ('kept');"
    box.ok("cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres", marker.encode())
    try:
        result = box.run(f"{provider}-restore-pg_cluster restore latest --database fixture")
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert "restored in its place" in result.stderr.decode()
        assert dialect.read(box) == expected(STATE_1)
        assert bystander.read(box) == expected(STATE_2)
        assert box.ok("cd / && runuser -u postgres -- psql -X -At -d postgres -c 'SELECT v FROM one_database_marker'") \
            == "kept\n"
        # A database the dump does not hold: named, nothing changed.
        missing = box.run(f"{provider}-restore-pg_cluster restore latest --database bystander")
        assert missing.returncode != 0
        assert "the cluster dump holds no database bystander" in missing.stderr.decode(), missing.stderr.decode()[-2000:]
        assert bystander.read(box) == expected(STATE_2)
        # A request of one database has no --database, and the cluster request no --into without it.
        for instance, args, message in (("pg_db", "--database fixture", "has no restore_database_cmd"),
                                        ("pg_cluster", "--into other", "has no restore_into_cmd")):
            refused = box.run(f"{provider}-restore-{instance} restore latest {args}")
            assert refused.returncode == 1 and message in refused.stderr.decode(), refused.stderr.decode()
    finally:
        bystander.remove(box, "bystander")
        box.ok("cd / && runuser -u postgres -- psql -X -q -d postgres -c 'DROP TABLE IF EXISTS one_database_marker'")
