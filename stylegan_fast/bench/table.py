"""The printed table of a benchmark: columns of result records, one row per case."""
from __future__ import annotations

from dataclasses import dataclass

from .baselines import BASELINES
from .records import format_shape


@dataclass(frozen=True)
class Column:
    """One table column: ``record[key]`` formatted with ``spec`` (numbers, right-aligned) or as
    text (``spec`` empty, left-aligned)."""
    title: str
    width: int
    key: str
    spec: str = ""


def with_widths(columns, **widths: int) -> tuple:
    """``columns`` with the widths of those named by key changed (e.g. ``mode=11``)."""
    return tuple(Column(c.title, widths.get(c.key, c.width), c.key, c.spec) for c in columns)


CASE_COLUMNS = (Column("op", 14, "op"), Column("backend", 8, "backend"),
                Column("dtype", 8, "dtype"), Column("shape", 16, "shape"),
                Column("mode", 7, "mode"))
SPEEDUP_COLUMNS = tuple(Column(f"x {baseline}", max(6, len(baseline) + 2),
                               f"speedup_vs_{baseline}", ".2f") for baseline in BASELINES)


def _cell(record: dict, column: Column) -> str:
    value = record.get(column.key)
    if value is None:
        return "-"
    if column.key == "shape":
        return format_shape(value)
    return format(value, column.spec) if column.spec else str(value)


def _join(cells: list, columns) -> str:
    """Cells padded to the column widths: text left-aligned, numbers right."""
    return " ".join(f"{cell:>{column.width}}" if column.spec else f"{cell:<{column.width}}"
                    for cell, column in zip(cells, columns))


def table_header(columns) -> str:
    return _join([column.title for column in columns], columns)


def table_row(record: dict, columns) -> str:
    """The record's cells; a failed case shows its text columns and the error."""
    if record["error"]:
        text = [column for column in columns if not column.spec]
        return f"{_join([_cell(record, c) for c in text], text)} ERROR {record['error']}"
    return _join([_cell(record, column) for column in columns], columns)
