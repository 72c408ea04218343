"""Commands inside the benchmark container, and their wall time measured inside it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import IO

CONTAINER = "selfhost-backup-bench"

# The command runs with its output in a log file; bash's EPOCHREALTIME brackets it inside the container, so
# the `docker exec` round trip is not part of the figure. Meanwhile a sampler reads the peak resident set
# (VmHWM) of every restic and borg process five times a second: the same probe for our units and the raw runs.
# With a unit name, a second sampler adds up the resident sets (VmRSS) of every process in that unit's cgroup at
# each tick and keeps the highest sum: a drill's whole footprint (the tool, psql, the scratch cluster).
_TIMED = """set -o pipefail
echo 0 >/tmp/bench-peak
echo 0 >/tmp/bench-unit-peak
( peak=0
  while :; do
    for p in $(pgrep -x 'restic|borg'); do
      v=$(awk '/^VmHWM/ {{print $2}}' /proc/$p/status 2>/dev/null)
      [ "${{v:-0}}" -gt "$peak" ] && peak=$v && echo "$peak" >/tmp/bench-peak
    done
    sleep 0.2
  done ) &
sampler=$!
unit_sampler=
if [ -n {unit} ]; then
  ( peak=0
    while :; do
      sum=0
      for f in $(grep -lsF -- /{unit} /proc/[0-9]*/cgroup); do
        v=$(awk '/^VmRSS/ {{print $2}}' "${{f%/cgroup}}/status" 2>/dev/null)
        sum=$((sum + ${{v:-0}}))
      done
      [ "$sum" -gt "$peak" ] && peak=$sum && echo "$peak" >/tmp/bench-unit-peak
      sleep 0.2
    done ) &
  unit_sampler=$!
fi
s=$EPOCHREALTIME
( {cmd} ) >/tmp/bench-cmd.log 2>&1
rc=$?
e=$EPOCHREALTIME
kill $sampler $unit_sampler
wait $sampler $unit_sampler 2>/dev/null
echo "$rc $s $e $(cat /tmp/bench-peak) $(cat /tmp/bench-unit-peak)"
"""


class CommandFailed(RuntimeError):
    """A command in the container exited non-zero."""


@dataclass(frozen=True)
class Timed:
    """The wall time of one command in seconds, the peak resident set of its restic or borg in KiB, and (when a
    unit was named) the peak of the summed resident sets of that unit's processes in KiB, else 0."""

    seconds: float
    peak_kib: int
    unit_peak_kib: int = 0


def sh(script: str) -> str:
    """Run a bash script in the container as root and return its standard output."""
    proc = subprocess.run(
        ["docker", "exec", CONTAINER, "bash", "-c", script],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise CommandFailed(f"{script!r} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def timed(cmd: str, unit: str = "") -> Timed:
    """Run cmd in the container and return its wall time; fail with its log when it fails. unit: the name of a
    systemd unit (e.g. restic-drill-plain.service) whose processes' summed memory is sampled too."""
    if unit and not unit.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"not a unit name: {unit!r}")
    rc, start, end, peak, unit_peak = sh(_TIMED.format(cmd=cmd, unit=f"'{unit}'" if unit else "''")).split()
    if rc != "0":
        log = sh("tail -n 30 /tmp/bench-cmd.log")
        raise CommandFailed(f"{cmd!r} exited {rc}:\n{log}")
    return Timed(float(end) - float(start), int(peak), int(unit_peak))


def open_stdin(script: str) -> subprocess.Popen[bytes]:
    """Start a bash script in the container that reads the caller's writes on its standard input."""
    return subprocess.Popen(
        ["docker", "exec", "-i", CONTAINER, "bash", "-c", script],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[bytes]) -> None:
    """Close the input of a process started by open_stdin and wait for it to succeed."""
    stdin: IO[bytes] | None = proc.stdin
    if stdin is not None:
        stdin.close()
    if proc.wait() != 0:
        raise CommandFailed(f"{proc.args!r} exited {proc.returncode}")
