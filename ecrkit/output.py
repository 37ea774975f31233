"""Tables that stay readable where people read them: a terminal of any width, a CI log, a file.

rich squeezes every column of a table that is wider than the console down to a few
characters. Where a table's fixed columns would not leave its free-text column room, the
rows are printed as records instead: the first cell as a heading, then one `column: value`
line per cell. Output that is not a terminal is 80 columns wide to rich, so CI logs and
`make run > file` get records, which grep and humans read alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

FREE_TEXT_MIN = 40  # columns the last, folded column needs to stay readable
BORDERS = 3  # rich's "│ " + padding per column


def fits(console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """Whether every column but the last keeps its widest line and the last still gets FREE_TEXT_MIN."""
    fixed = 0
    for index, header in enumerate(headers[:-1]):
        cells = [header, *(row[index] for row in rows)]
        fixed += max(len(line) for cell in cells for line in (cell.splitlines() or [""])) + BORDERS
    return fixed + FREE_TEXT_MIN + BORDERS <= console.width


def print_rows(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain-text cells (no markup) as a table when it fits, else as records."""
    if fits(console, headers, rows):
        table = Table(title=escape(title))
        for header in headers[:-1]:
            table.add_column(escape(header), no_wrap=True)
        table.add_column(escape(headers[-1]), overflow="fold", ratio=1)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        return
    console.print(escape(title), highlight=False, soft_wrap=True)
    for row in rows:
        console.print(escape(row[0]), highlight=False)
        for header, cell in zip(headers[1:], row[1:], strict=True):
            if cell:  # one line per cell, so that the record stays one block
                value = "; ".join(cell.splitlines())
                console.print(f"    {escape(header)}: {escape(value)}", highlight=False, soft_wrap=True)
