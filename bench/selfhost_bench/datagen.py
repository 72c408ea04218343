"""The benchmark database: realistic rows (random words and numbers) and the incremental workloads."""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import container

PSQL = "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d bench"
COLUMNS = "id, customer_id, sku, qty, price, created_at, title, body"
SCHEMA = """CREATE TABLE items (
  id bigint PRIMARY KEY, customer_id int NOT NULL, sku text NOT NULL, qty int NOT NULL,
  price numeric(10,2) NOT NULL, created_at timestamptz NOT NULL, title text NOT NULL, body text NOT NULL);"""
BATCH_ROWS = 20_000


class Rows:
    """A seeded generator of item rows in COPY text format (about 330 bytes each)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = ["".join(self.rng.choices(letters, k=self.rng.randint(2, 11))) for _word in range(5000)]

    def row(self, item_id: int) -> str:
        """One row: numbers, a random code, a timestamp and text of random words."""
        rng = self.rng
        title = " ".join(rng.choices(self.words, k=rng.randint(3, 8)))
        body = " ".join(rng.choices(self.words, k=rng.randint(20, 60)))
        month, day, second = rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 86399)
        clock = f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        stamp = f"2025-{month:02d}-{day:02d} {clock}+00"
        price = f"{rng.randint(100, 999_999) / 100:.2f}"
        sku = f"SKU-{rng.getrandbits(40):010x}"
        return f"{item_id}\t{rng.randint(1, 100_000)}\t{sku}\t{rng.randint(1, 50)}\t{price}\t{stamp}\t{title}\t{body}\n"

    def block(self, ids: list[int]) -> bytes:
        """The rows of these ids, as COPY text."""
        return "".join(self.row(i) for i in ids).encode()


@dataclass(frozen=True)
class Change:
    """What a workload changed: rows and the bytes of their new text."""

    workload: str
    rows: int
    changed_bytes: int


def create(size_mb: int, seed: int) -> int:
    """(Re)create the database bench with about size_mb MB of rows; return the number of rows."""
    container.sh("runuser -u postgres -- dropdb --if-exists bench && runuser -u postgres -- createdb bench")
    container.sh(f"{PSQL} -c {shell_quote(SCHEMA)}")
    rows, written, next_id = Rows(seed), 0, 1
    proc = container.open_stdin(f"{PSQL} -c 'COPY items ({COLUMNS}) FROM STDIN'")
    assert proc.stdin is not None
    while written < size_mb * 1_000_000:
        data = rows.block(list(range(next_id, next_id + BATCH_ROWS)))
        proc.stdin.write(data)
        written, next_id = written + len(data), next_id + BATCH_ROWS
    container.finish(proc)
    container.sh(f"{PSQL} -c 'CREATE INDEX items_customer ON items (customer_id)' -c 'VACUUM ANALYZE items'")
    return next_id - 1


def row_count() -> tuple[int, int]:
    """The number of rows and the highest id of the table items."""
    count, top = container.sh(f"{PSQL} -At -F ' ' -c 'SELECT count(*), max(id) FROM items'").split()
    return int(count), int(top)


def apply(workload: str, fraction: float, rng: random.Random) -> Change:
    """Append, or update clustered or scattered rows: fraction of the table's rows, with new random text."""
    count, top = row_count()
    n = max(1, int(count * fraction))
    rows = Rows(rng.getrandbits(32))
    if workload == "append":
        data = rows.block(list(range(top + 1, top + 1 + n)))
        load(f"COPY items ({COLUMNS}) FROM STDIN", data, "")
        return Change(workload, n, len(data))
    if workload == "clustered":
        start = rng.randint(1, max(1, top - n))
        ids = list(range(start, start + n))
    else:
        ids = sorted(rng.sample(range(1, top + 1), n))
    data = rows.block(ids)
    update = (f"UPDATE items i SET ({COLUMNS}) = (n.id, n.customer_id, n.sku, n.qty, n.price, n.created_at, "
              "n.title, n.body) FROM bench_new n WHERE i.id = n.id;")
    load(f"CREATE TEMP TABLE bench_new (LIKE items);\nCOPY bench_new ({COLUMNS}) FROM STDIN", data, update)
    return Change(workload, n, len(data))


def load(head: str, data: bytes, tail: str) -> None:
    """Run a psql script: head (ending in COPY ... FROM STDIN), the rows, then tail."""
    proc = container.open_stdin(f"{PSQL} -f -")
    assert proc.stdin is not None
    proc.stdin.write(f"{head};\n".encode() + data + f"\\.\n{tail}\n".encode())
    container.finish(proc)


def shell_quote(text: str) -> str:
    """Quote text for the container's shell."""
    return "'" + text.replace("'", "'\\''") + "'"
