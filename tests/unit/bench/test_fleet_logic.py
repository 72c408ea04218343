# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet bench phase's pure logic (bench/selfhost_bench/fleet_logic.py): inventory, names, recap, the
server's CPU peak, the model for many hosts and the report."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'bench'))

from selfhost_bench import fleet_logic as logic  # noqa: E402  pylint: disable=wrong-import-position


def test_clients_alternate_debian_13_and_12_and_the_server_is_13():
    assert logic.client_names(3) == ['bench-fleet-c1', 'bench-fleet-c2', 'bench-fleet-c3']
    assert [logic.suite_of(n) for n in logic.client_names(4)] == ['trixie', 'bookworm', 'trixie', 'bookworm']
    assert logic.suite_of(logic.SERVER) == 'trixie'
    assert logic.suite_of('bench-fleet-c10') == 'bookworm'


def test_inventory_has_the_groups_the_fleet_playbook_plays_on():
    inv = logic.inventory(3, 'borg')['all']
    groups = inv['children']
    assert list(groups['backup_servers']['hosts']) == ['bench-fleet-server']
    assert list(groups['clients']['hosts']) == logic.client_names(3)
    assert list(groups['sqlite_clients']['hosts']) == logic.client_names(3)
    assert list(groups['borg_clients']['hosts']) == logic.client_names(3)
    assert 'restic_clients' not in groups and 'postgresql_clients' not in groups
    assert list(groups['debian12']['hosts']) == ['bench-fleet-c2']
    assert list(groups['debian13']['hosts']) == ['bench-fleet-server', 'bench-fleet-c1', 'bench-fleet-c3']
    assert inv['vars']['ansible_connection'] == 'community.docker.docker'


def test_inventory_refuses_an_unknown_provider():
    with pytest.raises(ValueError, match='restic or borg'):
        logic.inventory(1, 'rsync')


def test_docker_run_boots_systemd_on_the_fleet_network_with_its_own_apt_cache():
    argv = logic.docker_run_argv('bench-fleet-c2', '/var/cache/apt-x')
    assert argv[:3] == ['docker', 'run', '--detach']
    assert argv[argv.index('--name') + 1] == 'bench-fleet-c2'
    assert argv[argv.index('--hostname') + 1] == 'c2'
    assert argv[argv.index('--network') + 1] == logic.NETWORK
    assert '/var/cache/apt-x/bench-fleet-c2:/var/cache/apt/archives:rw' in argv
    assert argv[-2:] == ['selfhost-backup/debian-systemd:bookworm', '/lib/systemd/systemd']
    assert '--privileged' not in argv


RECAP = """
PLAY RECAP *********************************************************************
bench-fleet-c1             : ok=40   changed=3    unreachable=0    failed=0    skipped=12   rescued=0    ignored=0
bench-fleet-server         : ok=25   changed=0    unreachable=0    failed=1    skipped=3    rescued=0    ignored=0
"""


def test_recap_reads_every_host_s_counts():
    assert logic.recap(RECAP) == {
        'bench-fleet-c1': {'ok': 40, 'changed': 3, 'unreachable': 0, 'failed': 0},
        'bench-fleet-server': {'ok': 25, 'changed': 0, 'unreachable': 0, 'failed': 1},
    }
    assert logic.recap('no recap here') == {}


def test_span_is_first_start_to_last_end():
    assert logic.span([(10.0, 12.0), (10.5, 15.0), (9.5, 11.0)]) == pytest.approx(5.5)
    with pytest.raises(ValueError):
        logic.span([])


def test_peak_cores_over_one_second_windows():
    # 0.5 core for 2 s, then 1.5 cores for 1 s.
    samples = [(0.0, 0), (1.0, 500_000_000), (2.0, 1_000_000_000), (3.0, 2_500_000_000)]
    assert logic.peak_cores(samples) == pytest.approx(1.5)
    assert logic.peak_cores(samples[:1]) == 0.0
    # Samples closer than the window are joined until it is covered.
    assert logic.peak_cores([(0.0, 0), (0.4, 100), (1.2, 1_200_000_000)]) == pytest.approx(1.0)


def costs(**changes):
    base = {'converge_seconds': {1: 60.0, 8: 120.0}, 'backup_seconds': 5.0, 'concurrent_seconds': 20.0,
            'concurrency': 8, 'bytes_per_backup': 10e6, 'server_cpu_seconds': 8.0}
    base.update(changes)
    return logic.Costs(**base)


def test_plan_arithmetic():
    answer = logic.plan(costs())
    assert answer.forks == 8
    assert answer.converge_hours == pytest.approx(125 * 120 / 3600)  # ceil(1000 / 8) batches of 120 s
    assert answer.spread_seconds == 6 * 3600 - 20
    # by concurrency: floor(8 * 21580 / 20) = 8632; by CPU: 1 s per backup, floor(0.5 * 2 * 21600 / 1) = 21600
    assert answer.hosts_per_server == 8632
    assert answer.servers == 1
    assert answer.expected_concurrent == pytest.approx(1000 * 20 / 21580)
    assert answer.server_cpu_share == pytest.approx(1000 * 1.0 / (2 * 21600))
    assert answer.megabytes_per_second == pytest.approx(1000 * 10 / 21600)
    assert any('ceil(1000 / 8610)' in line or 'ceil(1000 / 8632)' in line for line in answer.lines)


def test_plan_splits_hosts_over_servers_when_one_server_s_cpu_is_not_enough():
    # 60 CPU s a backup on the server: floor(21600 / 60) = 360 hosts a server, so 3 servers of 334.
    answer = logic.plan(costs(server_cpu_seconds=480.0))
    assert answer.hosts_per_server == 360
    assert answer.servers == 3
    assert answer.server_cpu_share == pytest.approx(334 * 60 / (2 * 21600))
    assert answer.server_cpu_share <= 0.5


def test_plan_takes_the_slower_of_alone_and_together_as_the_backup_time():
    assert logic.plan(costs(backup_seconds=30.0)).spread_seconds == 6 * 3600 - 30


def samples(counts=(1, 8)):
    out = {'fleet.load1': [3.0, 5.5], 'fleet.other_containers': [2.0, 4.0],
           'fleet.backup.alone.seconds': [5.0, 6.0], 'fleet.backup.all.seconds': [20.0, 18.0],
           'fleet.backup.all.server.added_bytes': [80e6, 80e6], 'fleet.backup.all.server.cpu_seconds': [8.0, 8.0],
           'fleet.backup.alone.server.added_bytes': [10e6, 10e6]}
    for count in counts:
        out[f'fleet.converge.{count}.first.seconds'] = [60.0 * (1 + count / 8)]
        out[f'fleet.converge.{count}.second.seconds'] = [30.0 * (1 + count / 8)]
        out[f'fleet.converge.{count}.second.changed'] = [0.0]
        out[f'fleet.converge.{count}.first.hosts_cpu_seconds'] = [50.0 * count / 8]
        out[f'fleet.converge.{count}.first.controller_cpu_seconds'] = [30.0 * count / 8]
    return out


def test_costs_come_from_the_medians_and_need_every_part():
    measured = logic.costs(samples(), [1, 8])
    assert measured is not None
    assert measured.converge_seconds == {1: 67.5, 8: 120.0}
    assert measured.backup_seconds == 5.5 and measured.concurrent_seconds == 19.0
    assert measured.bytes_per_backup == 10e6 and measured.concurrency == 8
    partial = samples()
    del partial['fleet.backup.all.seconds']
    assert logic.costs(partial, [1, 8]) is None
    assert logic.costs(samples(), []) is None


def test_markdown_states_the_load_the_ratios_and_the_model():
    text = logic.markdown({'cores': 2}, samples(), [1, 8], {'first-8': {'apt : install': 40.0}})
    assert 'loaded machine' in text and '3.00 to 5.50' in text
    assert '| 8 | 120.0 | 1.78x | 50 + 30 | 60.0 | 1.78x | - | 0 |' in text
    assert '8 at once / 1 alone, per round: 3.50 (3.00-4.00)x' in text
    assert 'first-8: apt : install 40.0' in text
    assert '## Model: 1000 hosts' in text


def test_markdown_without_backups_has_no_model():
    partial = {k: v for k, v in samples().items() if not k.startswith('fleet.backup')}
    text = logic.markdown({}, partial, [1, 8], {})
    assert 'Backups:' not in text and 'Model' not in text


def test_poisson_quantile():
    assert logic.poisson_quantile(0.0, 0.999) == 0
    # Poisson(1): P(X <= 4) = 0.9963, P(X <= 5) = 0.9994.
    assert logic.poisson_quantile(1.0, 0.999) == 5
    assert logic.poisson_quantile(1.0, 0.5) == 1


def test_plan_states_the_default_spread_and_the_controller_floor():
    answer = logic.plan(costs(controller_cpu_per_host=3.0))
    assert any('1000 x 20.0 / 3600 = 5.56 jobs at once' in line for line in answer.lines)
    assert any('1000 x 3.0 / 2 cores = 1500 s' in line for line in answer.lines)
    assert answer.concurrent_999 == logic.poisson_quantile(answer.expected_concurrent, 0.999)
    assert not any('controller alone' in line for line in logic.plan(costs()).lines)


def test_order_runs_the_smallest_and_the_largest_count_first():
    assert logic.order([1, 4, 8]) == [1, 8, 4]
    assert logic.order([8, 1, 2, 4, 1]) == [1, 8, 2, 4]
    assert logic.order([4]) == [4]
    assert logic.order([]) == []


def test_kept_keeps_the_converges_of_the_counts_not_run_again():
    old = {'samples': samples(), 'converge_top_tasks': {'first-1': {'a': 1.0}, 'first-8': {'b': 2.0}}}
    keep, where = logic.kept(old, [8])
    assert set(keep) == {'fleet.converge.1.first.seconds', 'fleet.converge.1.second.seconds',
                         'fleet.converge.1.second.changed', 'fleet.converge.1.first.hosts_cpu_seconds',
                         'fleet.converge.1.first.controller_cpu_seconds', 'fleet.load1', 'fleet.other_containers'}
    assert where == {'first-1': {'a': 1.0}}
    # A run of the smaller count only keeps the largest count's converges and the backups made on it.
    keep, where = logic.kept(old, [1])
    assert 'fleet.converge.1.first.seconds' not in keep and 'fleet.converge.8.first.seconds' in keep
    assert keep['fleet.backup.all.seconds'] == [20.0, 18.0]
    assert where == {'first-8': {'b': 2.0}}
    with pytest.raises(ValueError):
        logic.kept({'samples': [['fleet.converge.1.first.seconds', [1.0]]]}, [8])


def test_controller_cpu_per_host_is_the_slope_between_the_counts():
    # samples(): 30 * count / 8 CPU s: 3.75 at 1, 30 at 8, so 3.75 per more host.
    assert logic.controller_per_host(samples(), [1, 8]) == pytest.approx(3.75)
    assert logic.controller_per_host(samples((8,)), [8]) == pytest.approx(30.0 / 8)
    assert logic.controller_per_host({}, [1, 8]) == 0.0
    assert logic.costs(samples(), [1, 8]).controller_cpu_per_host == pytest.approx(3.75)
