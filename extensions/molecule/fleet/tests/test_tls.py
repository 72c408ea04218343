"""TLS with a CA of the user's own: a second backup server (fleet-tls) serves restic over https with a certificate
the test's CA signed (made here with openssl, no network). fleet-g13 adds an instance on it: trusting another CA
(settings.cacert) the converge stops at the repository check with a message naming the TLS cause, before anything
on the client changes or any repository is initialised; trusting the right CA it converges, backs up and restores.
Runs after the other tests (the instance stays)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import Box, playbook

CLIENT = Box("fleet-g13")
TLS_SERVER = Box("fleet-tls")
CA_DIR = "/etc/ssl/fleet-tls"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(name="pki", scope="module")
def fixture_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two CAs; the server's certificate (for fleet-tls, its address) is signed by the first."""
    work = tmp_path_factory.mktemp("pki")
    for ca in ("right", "other"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", f"/CN=fleet test CA {ca}", "-keyout", f"{ca}-ca.key", "-out", f"{ca}-ca.pem", cwd=work)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=fleet-tls",
            "-keyout", "server.key", "-out", "server.csr", cwd=work)
    (work / "san.ext").write_text("subjectAltName=DNS:fleet-tls\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "right-ca.pem", "-CAkey", "right-ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=work)
    return {name: (work / name).read_text() for name in ("right-ca.pem", "other-ca.pem", "server.crt", "server.key")}


def converge_with(pki: dict[str, str], cacert: str) -> tuple[int, str]:
    extra = {
        "fleet_tls_certificate": pki["server.crt"],
        "fleet_tls_key": pki["server.key"],
        "fleet_tls_ca_files": [{"dest": f"{CA_DIR}/{name}", "content": pki[name]}
                               for name in ("right-ca.pem", "other-ca.pem")],
        "fleet_extra_restic_instances": {"tls": {
            "request": "{{ fleet_request }}",
            "settings": {"repository": {"server": "fleet-tls"}, "passphrase": "{{ fleet_passphrase }}",
                         "writable_paths": "{{ fleet_writable_paths }}", "cacert": f"{CA_DIR}/{cacert}"}}},
    }
    run = playbook("tls.yml", "fleet-tls,fleet-g13", extra)
    output = run.stdout + run.stderr
    assert "fleet-passphrase-of" not in output
    assert "PRIVATE KEY" not in output
    return run.returncode, output


def client_state() -> str:
    return CLIENT.ok("ls -la --time-style=full-iso /etc/systemd/system /usr/local/bin /etc/selfhost-backup/restic "
                     "/var/lib/selfhost-backup; systemctl list-units --all --plain --no-legend 'restic-*' | sort")


def test_a_client_that_does_not_trust_the_server_s_ca_stops_before_any_change(pki: dict[str, str]):
    before = client_state()
    rc, output = converge_with(pki, "other-ca.pem")
    assert rc != 0, output[-4000:]
    assert "the TLS certificate of the repository's server is not trusted" in output, output[-4000:]
    assert "x509: certificate signed by unknown authority" in output, output[-4000:]
    assert "Nothing on this host was changed" in output
    assert client_state() == before
    CLIENT.ok("! test -e /usr/local/bin/restic-restore-tls && ! test -e /etc/systemd/system/restic-backup-tls.timer")
    # The server serves https with the given certificate, and no repository was initialised on it.
    TLS_SERVER.ok("grep -q -- '--tls-cert /etc/restic-rest-server/tls.crt' /etc/default/restic-rest-server")
    TLS_SERVER.ok("! test -e /srv/restic/fleet-g13/tls/config")


def test_a_client_that_trusts_the_server_s_ca_backs_up_and_restores(pki: dict[str, str]):
    rc, output = converge_with(pki, "right-ca.pem")
    assert rc == 0, output[-6000:]
    TLS_SERVER.ok("test -f /srv/restic/fleet-g13/tls/config")
    sql = "cd / && runuser -u fleetapp -- sqlite3 -bail /var/lib/fleetapp/app.db "
    CLIENT.ok(sql + "\"UPDATE fleet SET v = 'over tls' WHERE k = 'host'\"")
    written = CLIENT.ok(sql + "\"SELECT k || '=' || v FROM fleet ORDER BY k\"")
    backup = CLIENT.run("systemctl start --wait restic-backup-tls.service")
    assert backup.returncode == 0, CLIENT.journal("restic-backup-tls.service")
    assert len(json.loads(CLIENT.ok("restic-restore-tls snapshots --json"))) == 1
    CLIENT.ok(sql + "'DROP TABLE fleet'")
    restore = CLIENT.run("restic-restore-tls restore latest")
    assert restore.returncode == 0, restore.stderr.decode()[-3000:]
    assert CLIENT.ok(sql + "\"SELECT k || '=' || v FROM fleet ORDER BY k\"") == written
