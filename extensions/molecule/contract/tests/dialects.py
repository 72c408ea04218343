"""How the tests write, read, destroy and break each requester's database, and the fixture rows.

Values go in as hex (never quoted by hand) and come back as JSON built by the database itself, so the
comparison is of values: text byte for byte, binary as hex, NULL as None, numbers exactly.
"""

from __future__ import annotations

import copy
import json
import random
import shlex
import string

Row = tuple  # (id, txt, bin, num)

_RANDOM = random.Random(20261128)
LARGE_TEXT = "".join(_RANDOM.choices(string.ascii_letters + string.digits + " äöü€\n", k=600_000))
LARGE_BINARY = _RANDOM.randbytes(200_000)

STATE_1: list[Row] = [
    (1, "plain ascii", b"\x00\x01\x02\xff", 42),
    (2, "unicode: zażółć gęślą jaźń, 日本語, עברית, 🐢", b"", -9007199254740991),
    (3, None, None, None),
    (4, "quotes ' \" ` and backslashes \\ \\\\ \\n \\. %s $HOME", b"'\"\\%", 0),
    (5, "line one\nline two\r\nwith\ttab\n\\.\nDROP ROLE IF EXISTS postgres;\n-- Dump completed\nCOMMIT;", b"\n\r\x1a", 1),
    (6, LARGE_TEXT, LARGE_BINARY, 123456789012),
    (7, "", None, 7),
]
# Row 2 changed, row 5 gone, row 8 new, the large value changed in its middle.
STATE_2: list[Row] = [
    STATE_1[0],
    (2, "unicode changed: ÀÉÎÕÜ ✓", b"\xfe\xff", -1),
    STATE_1[2],
    STATE_1[3],
    (6, LARGE_TEXT[:300_000] + "CHANGED" + LARGE_TEXT[300_007:], LARGE_BINARY[::-1], 123456789013),
    STATE_1[6],
    (8, "a new row\x7f", b"\x00" * 64, 8),
]


def expected(rows: list[Row]) -> list[dict]:
    return [{"id": i, "txt": txt, "bin": None if blob is None else blob.hex(), "num": num}
            for i, txt, blob, num in rows]


def _hex(value: str | bytes) -> str:
    return (value.encode() if isinstance(value, str) else value).hex()


class Dialect:
    """A requester as the tests see it. ``instance`` is its instance name with both providers."""

    instance = ""
    atomic_restore = False  # a failed restore leaves the database as it was

    def write(self, box, rows: list[Row]) -> None:
        raise NotImplementedError

    def read(self, box) -> list[dict]:
        raise NotImplementedError

    def destroy(self, box) -> None:
        raise NotImplementedError

    def break_dump(self, box) -> None:
        """Make the next dump fail (the database goes away), until repair()."""
        raise NotImplementedError

    def repair(self, box) -> None:
        raise NotImplementedError

    def _literal(self, value: str | bytes, kind: str) -> str:
        """The database's literal for a value that is not None: kind txt (text) or bin (binary)."""
        raise NotImplementedError

    def _inserts(self, table: str, rows: list[Row]) -> list[str]:
        """One INSERT a row, each value a literal of the database's own (NULL for None)."""
        def literal(value, kind: str) -> str:
            return "NULL" if value is None else self._literal(value, kind)
        return [f"INSERT INTO {table} VALUES ({i}, {literal(txt, 'txt')}, {literal(blob, 'bin')}, "
                f"{'NULL' if num is None else num});" for i, txt, blob, num in rows]

    # The database servers' dialects: the attribute that holds the client's command line, how that line names the
    # database ({} for fixture, or another), and the command that drops another database ({} its quoted name).
    client_attribute = ""
    names_database = ""
    drop_database = ""

    def at(self, target: str) -> "Dialect":
        """The same dialect reading and writing another database (a file for SQLite): a restore --into's copy."""
        other = copy.copy(self)
        command = getattr(self, self.client_attribute)
        setattr(other, self.client_attribute, command.replace(self.names_database.format("fixture"),
                                                              self.names_database.format(shlex.quote(target))))
        return other

    def remove(self, box, target: str) -> None:
        """Remove the other database (or file) ``target`` if it is there."""
        box.ok(self.drop_database.format(shlex.quote(target)))


class PostgresCluster(Dialect):
    instance = "pg_cluster"
    psql = "PGCLIENTENCODING=UTF8 runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d fixture"
    client_attribute, names_database = "psql", " -d {}"
    drop_database = "cd / && runuser -u postgres -- dropdb --if-exists {}"

    def _literal(self, value, kind: str) -> str:
        if kind == "txt":
            return f"convert_from('\\x{_hex(value)}'::bytea, 'UTF8')"
        return f"'\\x{_hex(value)}'::bytea"

    # One-column rows that, as COPY data lines, read exactly like the lines the restore's guard looks for.
    LOOKALIKES = ("-- PostgreSQL database cluster dump complete", "--", "DROP ROLE IF EXISTS postgres;",
                  "CREATE ROLE postgres;", "\\connect postgres")

    def write(self, box, rows):
        sql = ["DROP TABLE IF EXISTS fixture;", "DROP TABLE IF EXISTS lookalikes;",
               "CREATE TABLE lookalikes (line text);",
               "CREATE TABLE fixture (id int PRIMARY KEY, txt text, bin bytea, num bigint);"]
        sql += [f"INSERT INTO lookalikes VALUES (convert_from('\\x{_hex(line)}'::bytea, 'UTF8'));"
                for line in self.LOOKALIKES]
        sql += self._inserts("fixture", rows)
        box.ok(f"cd / && {self.psql}", "\n".join(sql).encode())

    def read(self, box):
        query = ("SELECT coalesce(json_agg(json_build_object('id', id, 'txt', txt, 'bin', encode(bin, 'hex'), "
                 "'num', num) ORDER BY id), '[]') FROM fixture;")
        rows = json.loads(box.ok(f"cd / && {self.psql} -A -t", query.encode()))
        lookalikes = json.loads(box.ok(f"cd / && {self.psql} -A -t",
                                       b"SELECT json_agg(line ORDER BY line) FROM lookalikes;"))
        assert lookalikes == sorted(self.LOOKALIKES), lookalikes
        return rows

    def destroy(self, box):
        box.ok("cd / && runuser -u postgres -- dropdb fixture")

    def break_dump(self, box):
        box.ok("systemctl stop postgresql.service")

    def repair(self, box):
        box.ok("systemctl start postgresql.service && "
               "timeout 60 sh -c 'until runuser -u postgres -- pg_isready -q; do sleep 0.5; done'")


class PostgresDatabase(PostgresCluster):
    instance = "pg_db"
    atomic_restore = True  # pg_restore --single-transaction into the existing database


class MariaDB(Dialect):
    instance = "mariadb"
    client = "mariadb --default-character-set=utf8mb4 --max-allowed-packet=1G fixture"
    client_attribute, names_database = "client", " {}"
    # The restore --into names are plain (letters, digits, _ . -): quoted for the shell, then in backquotes.
    drop_database = "mariadb -e 'DROP DATABASE IF EXISTS `'{}'`'"

    def _literal(self, value, kind: str) -> str:
        if not value:
            return "''" if kind == "txt" else "X''"
        if kind == "txt":
            return f"CONVERT(X'{_hex(value)}' USING utf8mb4)"
        return f"X'{_hex(value)}'"

    def write(self, box, rows):
        sql = ["DROP TABLE IF EXISTS t;",
               "CREATE TABLE t (id INT PRIMARY KEY, txt LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, "
               "bin LONGBLOB, num BIGINT) ENGINE=InnoDB;"]
        sql += self._inserts("t", rows)
        box.ok(self.client, "\n".join(sql).encode())

    def read(self, box):
        query = ("SET SESSION group_concat_max_len = 1073741824;"
                 "SELECT coalesce(JSON_ARRAYAGG(JSON_OBJECT('id', id, 'txt', txt, 'bin', LOWER(HEX(bin)), 'num', num) "
                 "ORDER BY id), '[]') FROM t;")
        return json.loads(box.ok(f"{self.client} --batch --raw --skip-column-names", query.encode()))

    def destroy(self, box):
        box.ok("mariadb -e 'DROP DATABASE fixture'")

    def break_dump(self, box):
        box.ok("systemctl stop mariadb.service")

    def repair(self, box):
        box.ok("systemctl start mariadb.service")


class MariaDBDatabase(MariaDB):
    instance = "mariadb_db"


class SQLite(Dialect):
    instance = "sqlite"
    atomic_restore = True  # built in a temporary file, renamed over the database only when complete

    def __init__(self, path: str, user: str) -> None:
        self.path = path
        self.user = user
        self.sqlite = f"cd / && runuser -u {user} -- sqlite3 -bail -batch {shlex.quote(path)}"

    def _literal(self, value, kind: str) -> str:
        return f"CAST(X'{_hex(value)}' AS TEXT)" if kind == "txt" else f"X'{_hex(value)}'"

    def write(self, box, rows):
        sql = ["BEGIN;", "DROP TABLE IF EXISTS t;",
               "CREATE TABLE t (id INTEGER PRIMARY KEY, txt TEXT, bin BLOB, num INTEGER);"]
        sql += self._inserts("t", rows)
        sql.append("COMMIT;")
        box.ok(self.sqlite, "\n".join(sql).encode())

    def read(self, box):
        query = ("SELECT json_group_array(json_object('id', id, 'txt', txt, 'bin', "
                 "CASE WHEN bin IS NULL THEN NULL ELSE lower(hex(bin)) END, 'num', num)) "
                 "FROM (SELECT * FROM t ORDER BY id);")
        # sqlite3 would create a missing file: read only one that exists.
        return json.loads(box.ok(f"test -f {shlex.quote(self.path)} && {self.sqlite}", query.encode()))

    def destroy(self, box):
        path = shlex.quote(self.path)
        box.ok(f"rm -f {path} {path}-wal {path}-shm {path}-journal")

    def break_dump(self, box):
        box.ok(f"mv {shlex.quote(self.path)} {shlex.quote(self.path)}.away")

    def repair(self, box):
        box.ok(f"mv {shlex.quote(self.path)}.away {shlex.quote(self.path)}")

    def at(self, target):
        return SQLite(target, self.user)

    def remove(self, box, target):
        path = shlex.quote(target)
        box.ok(f"rm -f {path} {path}-wal {path}-shm {path}-journal")
