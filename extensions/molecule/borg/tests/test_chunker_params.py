"""settings.chunker_params (issue 20): a change of borg's chunker parameters reaches borg create, and every archive
made before it stays restorable, and so do those made with it once the parameters change back. Runs after
test_borg.py's own tests (file order) and converges variant.yml, so it leaves the instances as converge.yml made
them."""

from __future__ import annotations

from drills import BORG, backup_new, read, restore_ok, write
from repository_guards import variant

testinfra_hosts = ["ansible://clients"]

OTHER = "buzhash,10,23,16,4095"  # 64 KiB chunks on average: not the role's default


def create_line(host) -> str:
    """The borg create command line of instance local, as its restore script (the job's data) has it."""
    return host.check_output("grep -m1 '^readonly BORG_CREATE=' /usr/local/bin/borg-restore-local")


def restored(host, archive: str) -> str:
    restore_ok(host, BORG, "local", archive)
    return read(host, BORG)


def test_changing_the_chunker_params_keeps_every_archive_restorable(host):
    assert "--chunker-params" in create_line(host) and OTHER not in create_line(host)
    write(host, BORG, "before the change\n" * 2000)
    before = backup_new(host, BORG, "local")

    rc, output = variant(host, BORG, borg_test_changes={"local": {"settings": {"chunker_params": OTHER}}})
    assert rc == 0, output[-3000:]
    assert f"--chunker-params {OTHER} " in create_line(host)
    write(host, BORG, "after the change\n" * 2000)
    after = backup_new(host, BORG, "local")
    assert restored(host, before) == "before the change\n" * 2000
    assert restored(host, "latest") == "after the change\n" * 2000

    # Back to the default: the archive made with the other parameters restores as well.
    rc, output = variant(host, BORG)
    assert rc == 0, output[-3000:]
    assert OTHER not in create_line(host)
    assert restored(host, after) == "after the change\n" * 2000
    assert restored(host, before) == "before the change\n" * 2000
