"""The writer's split of a batch into dates: slices of long runs, filters of mixed stretches."""

from __future__ import annotations

import pyarrow as pa

from logsieve.storage import datafiles, table


def test_rows_split_by_date_keep_every_row_once_in_order() -> None:
    # A long run of one date, a stretch where two dates interleave, a long run of the next.
    dates = ["2025-08-01"] * 3000 + ["2025-08-01", "2025-08-02"] * 50 + ["2025-08-02"] * 2000
    batch = pa.RecordBatch.from_pydict(
        {"n": list(range(len(dates))), table.PARTITION_COLUMN: dates}
    )
    pieces = datafiles._by_date(batch)
    assert all(piece.column_names == ["n"] for _, piece in pieces)
    got: dict[str, list[int]] = {}
    for date, piece in pieces:
        got.setdefault(date, []).extend(piece.column("n").to_pylist())
    expected: dict[str, list[int]] = {}
    for n, date in enumerate(dates):
        expected.setdefault(date, []).append(n)
    assert got == expected
    assert len(pieces) <= 4  # two slices and one filter per date of the mixed stretch
