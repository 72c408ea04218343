#!/usr/bin/env bash
# Run in a fleet client by the bench's fleet phase (bash -s): wait until the epoch second AT (so that every
# client starts together), start the backup unit UNIT and wait for it; print its exit status, start and end
# (EPOCHREALTIME; the containers share the host's clock).
#
# usage: fleet_backup.sh AT UNIT
set -uo pipefail
[ "$#" -eq 2 ] || { echo "usage: $0 AT UNIT" >&2; exit 2; }
at=$1 unit=$2
now=${EPOCHREALTIME/./}
wait_us=$((${at}000000 - 10#$now))
[ "$wait_us" -le 0 ] || sleep "$((wait_us / 1000000)).$(printf '%06d' $((wait_us % 1000000)))"
start=$EPOCHREALTIME
systemctl start --wait "$unit"
rc=$?
end=$EPOCHREALTIME
echo "$rc $start $end"
