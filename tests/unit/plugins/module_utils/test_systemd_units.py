# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _systemd_units as units

SERVICE = units.ServiceSpec(
    description='restic backup of app (50%)',
    exec_start=(('/usr/bin/restic', 'backup', '--stdin-from-command', '--', '/bin/sh', '-c', 'pg_dumpall | gzip'),),
    user='postgres',
    environment=(('RESTIC_REPOSITORY', '/srv/backup/app'), ('TAGS', 'a b')),
    credentials=(('passphrase', '/etc/selfhost-backup/app.pass'),),
    nice=10,
    io_scheduling_class='idle',
    io_scheduling_priority=7,
    read_write_paths=('/srv/backup/app', '-/var/cache/my dir'),
    cache_directory='restic-app',
    after=('postgresql.service',),
    wants=('network-online.target',),
)

EXPECTED_SERVICE = """\
# Managed by Ansible (selfhost.backup.backup_jobs): local changes will be overwritten.
[Unit]
Description=restic backup of app (50%%)
Wants=network-online.target
After=postgresql.service
StartLimitIntervalSec=0

[Service]
Type=oneshot
User=postgres
Environment=RESTIC_REPOSITORY=/srv/backup/app
Environment="TAGS=a b"
LoadCredential=passphrase:/etc/selfhost-backup/app.pass
CacheDirectory=restic-app
CacheDirectoryMode=0700
ExecStart=/usr/bin/restic backup --stdin-from-command -- /bin/sh -c "pg_dumpall | gzip"
Nice=10
IOSchedulingClass=idle
IOSchedulingPriority=7
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
UMask=0077
ReadWritePaths=/srv/backup/app "-/var/cache/my dir"
"""

EXPECTED_TIMER = """\
# Managed by Ansible (selfhost.backup.backup_jobs): local changes will be overwritten.
[Unit]
Description=Timer of restic backup of app

[Timer]
OnCalendar=*-*-* 02:30:00
Persistent=false
RandomizedDelaySec=900
Unit=restic-backup-app.service

[Install]
WantedBy=timers.target
"""


def test_render_service_exactly():
    assert units.render_service(SERVICE) == EXPECTED_SERVICE


def test_render_timer_exactly():
    spec = units.TimerSpec(description='Timer of restic backup of app', unit='restic-backup-app.service',
                           on_calendar='*-*-* 02:30:00', persistent=False, randomized_delay_sec=900)
    assert units.render_timer(spec) == EXPECTED_TIMER


def test_render_timer_with_a_fixed_random_delay():
    spec = units.TimerSpec(description='Timer of restic backup of app', unit='restic-backup-app.service',
                           on_calendar='*-*-* 02:30:00', persistent=False, randomized_delay_sec=900,
                           fixed_random_delay=True)
    assert units.render_timer(spec) == EXPECTED_TIMER.replace(
        'RandomizedDelaySec=900\n', 'RandomizedDelaySec=900\nFixedRandomDelay=true\n')


def test_minimal_service_without_hardening_has_no_optional_lines():
    text = units.render_service(units.ServiceSpec(description='d', exec_start=(('/bin/true',),), hardening=False))
    assert text == (units.MANAGED_HEADER + '\n[Unit]\nDescription=d\nStartLimitIntervalSec=0\n\n'
                    '[Service]\nType=oneshot\nUser=root\nExecStart=/bin/true\n')


def test_every_unit_starts_with_the_managed_header():
    spec = units.TimerSpec(description='d', unit='x.service', on_calendar='daily')
    for text in (units.render_service(SERVICE), units.render_timer(spec)):
        assert text.splitlines()[0] == units.MANAGED_HEADER


def test_credentials_render_paths_never_contents():
    text = units.render_service(SERVICE)
    assert 'LoadCredential=passphrase:/etc/selfhost-backup/app.pass' in text
    assert text.count('LoadCredential=') == 1


@pytest.mark.parametrize('word, expected', [
    ('plain', 'plain'),
    ('--read-data-subset=5/10', '--read-data-subset=5/10'),
    ('two words', '"two words"'),
    ('', '""'),
    ('say "hi"', '"say \\"hi\\""'),
    ("it's", '"it\'s"'),
    ('50%', '"50%%"'),
    ('%h', '"%%h"'),
    ('$HOME', '"$$HOME"'),
    ('${X}', '"$${X}"'),
    ('back\\slash', '"back\\\\slash"'),
    ('line\nbreak', '"line\\nbreak"'),
    ('tab\there', '"tab\\there"'),
    ('bell\x07', '"bell\\x07"'),
    (';', '";"'),
])
def test_exec_arguments_are_quoted_for_systemd(word, expected):
    assert units.quote_word(word, expand_dollar=True) == expected


def test_dollar_is_kept_outside_exec_start():
    assert units.quote_word('PATH=$PATH:/x') == '"PATH=$PATH:/x"'


def test_render_command_quotes_each_argument():
    argv = ['/bin/sh', '-c', 'pg_dump "$DB" | gzip > /dev/stdout', '100%']
    assert units.render_command(argv) == '/bin/sh -c "pg_dump \\"$$DB\\" | gzip > /dev/stdout" "100%%"'


@pytest.mark.parametrize('argv, words', [
    ([], 'at least one element'),
    (['restic', 'backup'], 'absolute path'),
    (['-/bin/false'], 'absolute path'),
])
def test_render_command_refuses_unsafe_programs(argv, words):
    with pytest.raises(units.UnitSpecError, match=words):
        units.render_command(argv)


@pytest.mark.parametrize('render, spec', [
    (units.render_service, units.ServiceSpec(description='two\nlines', exec_start=(('/bin/true',),))),
    (units.render_timer, units.TimerSpec(description='d', unit='x.service', on_calendar='daily\nOnCalendar=hourly')),
    (units.render_service, units.ServiceSpec(description='d', exec_start=(('/bin/true',),), credentials=(('c', '/x\n'),))),
])
def test_newlines_cannot_inject_settings(render, spec):
    with pytest.raises(units.UnitSpecError, match='single line'):
        render(spec)
