"""The fleet: every client backs up to the one backup server and restores exactly; a client can neither delete on
the server nor reach another client's repository; the server's maintenance applies each client's retention.

The tests run in this file's order (round trips first: they make the first snapshots)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import Box, playbook, task_output

SERVER = Box("fleet-server")
# client -> (provider, database); molecule.yml's groups say the same.
CLIENTS = {
    "fleet-a13": ("restic", "postgresql"),
    "fleet-b12": ("restic", "sqlite"),
    "fleet-c12": ("borg", "postgresql"),
    "fleet-d13": ("borg", "sqlite"),
    "fleet-e12": ("restic", "sqlite"),
    "fleet-f13": ("borg", "sqlite"),
    "fleet-g13": ("restic", "sqlite"),
    "fleet-h12": ("borg", "sqlite"),
}
# What the last tests drop from backup_server_clients and list again: one client of each tool.
DROPPED = ("fleet-b12", "fleet-d13")
SQLITE = "/var/lib/fleetapp/app.db"
KEEP_LAST = 2  # vars.yml: fleet_retention


def sql(client: str, statement: str) -> str:
    box = Box(client)
    if CLIENTS[client][1] == "postgresql":
        return box.ok(f"cd / && runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d postgres -c {shlex.quote(statement)}")
    return box.ok(f"cd / && runuser -u fleetapp -- sqlite3 -bail {SQLITE} {shlex.quote(statement)}")


def rows(client: str) -> list[str]:
    return sql(client, "SELECT k || '=' || v FROM fleet ORDER BY k").split()


def backup(client: str) -> None:
    provider = CLIENTS[client][0]
    result = Box(client).run(f"systemctl start --wait {provider}-backup-app.service")
    assert result.returncode == 0, Box(client).journal(f"{provider}-backup-app.service")


def snapshots(client: str) -> list[dict]:
    provider = CLIENTS[client][0]
    listed = json.loads(Box(client).ok(f"{provider}-restore-app snapshots --json"))
    return sorted(listed, key=lambda snapshot: snapshot["time"])


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_round_trip(client: str):
    """Rows written, backed up to the server, the table destroyed, restored: the same values."""
    provider = CLIENTS[client][0]
    sql(client, "CREATE TABLE fleet (k TEXT PRIMARY KEY, v TEXT)")
    sql(client, f"INSERT INTO fleet VALUES ('host', '{client}'), ('quote', 'it''s'), ('unicode', 'Grüße')")
    written = rows(client)
    assert written == [f"host={client}", "quote=it's", "unicode=Grüße"]
    backup(client)
    assert len(snapshots(client)) == 1
    sql(client, "DROP TABLE fleet")
    with pytest.raises(AssertionError):
        rows(client)
    restore = Box(client).run(f"{provider}-restore-app restore latest")
    assert restore.returncode == 0, restore.stderr.decode()[-3000:]
    assert rows(client) == written


def test_each_client_has_its_own_repository_on_the_server():
    listing = SERVER.ok("ls /srv/restic /srv/borg")
    for client, (provider, dummy) in CLIENTS.items():
        SERVER.ok(f"test -f /srv/{provider}/{client}/app/config")
        assert client in listing


@pytest.mark.parametrize("client", sorted(c for c, (p, d) in CLIENTS.items() if p == "restic"))
def test_a_restic_client_cannot_forget_on_the_server(client: str):
    backup(client)
    before = snapshots(client)
    assert len(before) >= 2
    forget = Box(client).run("restic-restore-app exec -- forget --keep-last 1 --prune")
    assert forget.returncode != 0
    assert snapshots(client) == before


def _rest_status(client: str, path: str) -> str:
    """The HTTP status of a GET on the rest-server with this client's own user and password."""
    program = ("import base64, sys, urllib.error, urllib.request\n"
               "password = open('/etc/selfhost-backup/servers/fleet-server.restic-password').read().strip()\n"
               "request = urllib.request.Request('http://fleet-server:8000' + sys.argv[1])\n"
               "token = base64.b64encode((sys.argv[2] + ':' + password).encode()).decode()\n"
               "request.add_header('Authorization', 'Basic ' + token)\n"
               "try:\n    print(urllib.request.urlopen(request).status)\n"
               "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")
    return Box(client).ok(f"python3 -c {shlex.quote(program)} {shlex.quote(path)} {client}").strip()


def test_a_restic_client_cannot_read_another_client_s_repository():
    assert _rest_status("fleet-a13", "/fleet-a13/app/config") == "200"
    assert _rest_status("fleet-a13", "/fleet-b12/app/config") in ("401", "403", "404")
    assert _rest_status("fleet-b12", "/fleet-a13/app/keys/") in ("401", "403", "404")


def test_a_restic_client_cannot_delete_a_file_on_the_server():
    """Past restic itself: a DELETE of a snapshot file with the client's own credentials is refused (403)."""
    snapshot = SERVER.ok("ls /srv/restic/fleet-a13/app/snapshots | head -n 1").strip()
    program = ("import base64, sys, urllib.error, urllib.request\n"
               "password = open('/etc/selfhost-backup/servers/fleet-server.restic-password').read().strip()\n"
               "request = urllib.request.Request('http://fleet-server:8000' + sys.argv[1], method='DELETE')\n"
               "token = base64.b64encode(('fleet-a13:' + password).encode()).decode()\n"
               "request.add_header('Authorization', 'Basic ' + token)\n"
               "try:\n    print(urllib.request.urlopen(request).status)\n"
               "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")
    path = f"/fleet-a13/app/snapshots/{snapshot}"
    assert Box("fleet-a13").ok(f"python3 -c {shlex.quote(program)} {path}").strip() == "403"
    SERVER.ok(f"test -f /srv/restic{path}")


@pytest.mark.parametrize("client", sorted(c for c, (p, d) in CLIENTS.items() if p == "borg"))
def test_a_borg_client_reaches_its_own_repository_only(client: str):
    other = next(c for c, (p, d) in CLIENTS.items() if p == "borg" and c != client)
    listing = Box(client).run(f"borg-restore-app exec -- list ssh://borg@fleet-server/srv/borg/{other}/app")
    assert listing.returncode != 0
    assert other not in listing.stdout.decode()
    line = SERVER.ok(f"grep -F 'borg-backup-app@{client}' /var/lib/borg/.ssh/authorized_keys")
    assert line.startswith(f'command="borg serve --append-only --restrict-to-repository /srv/borg/{client}/app",restrict ')


@pytest.mark.parametrize("client", ["fleet-e12", "fleet-f13"])
def test_a_client_s_check_and_drill_work_through_the_append_only_server(client: str):
    """The other jobs that open the server's repository, enabled on every client (vars.yml; their timers' spread is
    tests/test_schedule.py's): one client of each tool runs its own repository check and a restore drill of its
    newest snapshot through the append-only server, and neither adds or removes a snapshot."""
    provider = CLIENTS[client][0]
    before = snapshots(client)
    for unit in (f"{provider}-backup-app-check.service", f"{provider}-drill-app.service"):
        result = Box(client).run(f"systemctl start --wait {unit}")
        assert result.returncode == 0, Box(client).journal(unit)
    assert snapshots(client) == before


@pytest.fixture(name="maintained", scope="module")
def fixture_maintained() -> dict[str, list[str]]:
    """Every client with at least KEEP_LAST + 2 snapshots, then one run of the server's maintenance (it goes through
    every client instance): each client's snapshot ids from before it."""
    before = {}
    for client in sorted(CLIENTS):
        while len(snapshots(client)) < KEEP_LAST + 2:
            backup(client)
        before[client] = [snapshot["id"] for snapshot in snapshots(client)]
    result = SERVER.run("systemctl start --wait selfhost-backup-server-maintenance.service")
    assert result.returncode == 0, SERVER.journal("selfhost-backup-server-maintenance.service")
    return before


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_server_side_retention_keeps_the_newest(client: str, maintained: dict[str, list[str]]):
    before = maintained[client]
    after = [snapshot["id"] for snapshot in snapshots(client)]
    assert after == before[-KEEP_LAST:]
    # The kept snapshot still restores.
    provider = CLIENTS[client][0]
    written = rows(client)
    sql(client, "DROP TABLE fleet")
    assert Box(client).run(f"{provider}-restore-app restore latest").returncode == 0
    assert rows(client) == written


def test_the_server_holds_its_credentials_root_only():
    listing = SERVER.ok("stat -c '%U %a %n' /etc/selfhost-backup-server/credentials/*")
    lines = listing.split("\n")
    assert len([line for line in lines if line]) == len(CLIENTS)
    assert all(line.startswith("root 600 ") for line in lines if line)
    # restic: the server's own key, not the client's passphrase.
    held = SERVER.ok("cat /etc/selfhost-backup-server/credentials/restic-fleet-a13-app")
    assert "fleet-passphrase-of" not in held


def _converge(limit: str, extra: dict | None = None) -> str:
    run = playbook("converge.yml", limit, extra)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "fleet-passphrase-of" not in output
    return output


@pytest.fixture(name="history", scope="module")
def fixture_history() -> dict[str, list[str]]:
    """The snapshot ids of the dropped clients before they are dropped."""
    return {client: [snapshot["id"] for snapshot in snapshots(client)] for client in DROPPED}


def test_finally_a_client_no_longer_listed_loses_access(history: dict[str, list[str]]):
    """The server converged alone with backup_server_clients without two clients: their backups fail, the listed
    ones go on, and their repositories stay on the server."""
    listed = sorted(set(CLIENTS) - set(DROPPED))
    assert all(history.values())
    output = _converge("fleet-server", {"fleet_listed_clients": listed})
    assert "Remove the access of clients no longer listed" in output
    assert "borg-backup-app@fleet-d13" not in SERVER.ok("cat /var/lib/borg/.ssh/authorized_keys")
    assert SERVER.run("grep -q '^fleet-b12:' /etc/restic-rest-server/users.htpasswd").returncode != 0
    for client in ("fleet-a13", "fleet-c12"):
        backup(client)
    for client in DROPPED:
        provider = CLIENTS[client][0]
        assert Box(client).run(f"systemctl start --wait {provider}-backup-app.service").returncode != 0
    SERVER.ok("test -f /srv/restic/fleet-b12/app/config && test -f /srv/borg/fleet-d13/app/config")


def test_finally_a_dropped_client_s_own_converge_fails_clearly_and_gains_no_access():
    """The server and the dropped clients converged while the server's list still leaves them out: each client
    stops at its validation, before any change, naming the server, the variable and itself; the server's
    authorized_keys and htpasswd do not get them back (the fleet stays idempotent: no prune-then-re-add)."""
    listed = sorted(set(CLIENTS) - set(DROPPED))
    keys_before = SERVER.ok("cat /var/lib/borg/.ssh/authorized_keys")
    users_before = SERVER.ok("cut -d: -f1 /etc/restic-rest-server/users.htpasswd")
    run = playbook("converge.yml", ",".join(("fleet-server",) + DROPPED), {"fleet_listed_clients": listed})
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-6000:]
    for client in DROPPED:
        provider = CLIENTS[client][0]
        assert (f"{provider}_instances.app: this host {client} is not in backup_server_clients of server "
                "fleet-server") in output, output[-6000:]
    assert "fleet-passphrase-of" not in output
    assert "changed=0" in next(line for line in output.splitlines() if line.startswith("fleet-server "))
    for client in DROPPED:
        recap = next(line for line in output.splitlines() if line.startswith(f"{client} "))
        assert "changed=0" in recap and "failed=1" in recap, recap
    assert SERVER.ok("cat /var/lib/borg/.ssh/authorized_keys") == keys_before
    assert "borg-backup-app@fleet-d13" not in keys_before
    assert SERVER.ok("cut -d: -f1 /etc/restic-rest-server/users.htpasswd") == users_before
    assert "fleet-b12" not in users_before.split()
    for client in DROPPED:
        provider = CLIENTS[client][0]
        assert Box(client).run(f"systemctl start --wait {provider}-backup-app.service").returncode != 0


def test_finally_a_client_listed_again_in_check_mode_reports_the_access_it_would_get_and_changes_nothing():
    """Listed again, the server and the dropped clients converged in check mode first (--check --diff, as an admin
    does before the real run): the repository checks, which the server would refuse until the client's access is
    back, are not asked and fail nothing; each client reports the access it would get back as a change (restic: its
    rest-server user, borg: its authorized_keys line); the server's htpasswd and authorized_keys stay as they are, and
    the clients' backups still fail until the real run."""
    keys_before = SERVER.ok("cat /var/lib/borg/.ssh/authorized_keys")
    users_before = SERVER.ok("cut -d: -f1 /etc/restic-rest-server/users.htpasswd")
    run = playbook("converge.yml", ",".join(("fleet-server",) + DROPPED), check=True)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    for client in DROPPED:
        recap = next(line for line in output.splitlines() if line.startswith(f"{client} "))
        assert "failed=0" in recap, recap
    restic_client, borg_client = (next(c for c in DROPPED if CLIENTS[c][0] == tool) for tool in ("restic", "borg"))
    report = task_output(output, "Report the backup servers that would learn this host's user (check mode)")
    assert f"changed: [{restic_client}] => (item=fleet-server)" in report, report
    assert f"would authorize {restic_client} on the rest-server of fleet-server" in report, report
    authorize = task_output(output, "Authorize each job's key on its server (append-only, its repository only)")
    assert re.search(rf"changed: \[{borg_client} -> [^\]]+\] => \(item=fleet-server: app\)", authorize), authorize
    checks = {restic_client: "Check the repositories with the new secrets before anything is replaced",
              borg_client: "Check the repositories with the new passphrases before anything is replaced"}
    for client, task in checks.items():
        assert f"ok: [{client}]" in task_output(output, task), task_output(output, task)
    password = Box(restic_client).ok("cat /etc/selfhost-backup/servers/fleet-server.restic-password").strip()
    assert "fleet-passphrase-of" not in output and password not in output
    assert SERVER.ok("cat /var/lib/borg/.ssh/authorized_keys") == keys_before
    assert SERVER.ok("cut -d: -f1 /etc/restic-rest-server/users.htpasswd") == users_before
    for client in DROPPED:
        provider = CLIENTS[client][0]
        assert Box(client).run(f"systemctl start --wait {provider}-backup-app.service").returncode != 0


@pytest.mark.parametrize("client", DROPPED)
def test_finally_a_client_listed_again_gets_its_access_and_history_back(client: str, history: dict[str, list[str]]):
    """Listed again, the server and the client converged: the client's key or user is back before its repository
    check reaches the server (borg: the check ran with a key the server had dropped, and the converge stopped), a
    backup and a restore work, and the snapshots from before are still there."""
    if client == DROPPED[0]:
        _converge(",".join(("fleet-server",) + DROPPED))
    provider = CLIENTS[client][0]
    sql(client, "UPDATE fleet SET v = 'listed again' WHERE k = 'host'")
    written = rows(client)
    backup(client)
    ids = [snapshot["id"] for snapshot in snapshots(client)]
    assert ids[:len(history[client])] == history[client]
    assert len(ids) == len(history[client]) + 1
    sql(client, "DROP TABLE fleet")
    restore = Box(client).run(f"{provider}-restore-app restore latest")
    assert restore.returncode == 0, restore.stderr.decode()[-3000:]
    assert rows(client) == written
