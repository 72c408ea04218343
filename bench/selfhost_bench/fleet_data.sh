#!/usr/bin/env bash
# Run in a fleet client by the bench's fleet phase (bash -s): fill the SQLite database of the fleet scenario with
# fresh random rows, about MB megabytes, so that every backup of a round stores that much new data.
#
# usage: fleet_data.sh PATH USER MB
set -euo pipefail
[ "$#" -eq 3 ] || { echo "usage: $0 PATH USER MB" >&2; exit 2; }
db=$1 user=$2 mb=$3
[[ "$mb" =~ ^[0-9]+$ ]] || { echo "MB must be a number: $mb" >&2; exit 2; }
# Rows of 1000 hex characters (500 random bytes each): text that compresses about 2:1, like a dump.
rows=$((mb * 1000))
runuser -u "$user" -- sqlite3 "$db" <<SQL
CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
DELETE FROM bench;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO bench (id, body) SELECT i, hex(randomblob(500)) FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
