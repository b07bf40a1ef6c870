"""Registers as JSON, as an Excel workbook (xlsx) or as a CSV a spreadsheet opens, for every service.

Both spreadsheets carry the same Chinese headers and the same cells: times in Beijing time (Asia/Shanghai)
to the second, never UTC, never with microseconds; money with two places; ids as text. The xlsx holds
times as real date cells and every id as a text cell (so Excel keeps all 19 digits of an order id);
the CSV is UTF-8 with a BOM so Excel reads the Chinese, times as `YYYY-MM-DD HH:MM:SS`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi.responses import JSONResponse, Response
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from .clock import SHANGHAI, as_utc

Format = Literal["json", "csv", "xlsx"]
Kind = Literal["text", "time", "date", "money", "number"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {}, XLSX: {}},
        "description": "JSON; ?format=xlsx for Excel, ?format=csv for CSV (Chinese headers, Beijing time)",
    }
}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Column:
    """One register column: the row's key (a dotted path reads a nested dict), its Chinese header and
    what its cells are."""

    key: str
    header: str
    kind: Kind = "text"


def register_response(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column | str],
    fmt: Format,
    filename: str,
    title: str = "register",
) -> Response:
    if fmt == "json":
        return JSONResponse({"items": list(rows), "count": len(rows)})
    cols = [c if isinstance(c, Column) else Column(c, c) for c in columns]
    if fmt == "xlsx":
        return Response(
            _xlsx(rows, cols, title),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.header for c in cols])
    for row in rows:
        writer.writerow([_csv_cell(cell_value(row, c), c.kind) for c in cols])
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def cell_value(row: dict[str, Any], column: Column) -> Any:
    """The typed value of one cell: a time in Beijing time (naive, to the second), money as Decimal."""
    value: Any = row
    for part in column.key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or value == "":
        return None
    if column.kind == "time":
        at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return as_utc(at).astimezone(SHANGHAI).replace(tzinfo=None, microsecond=0)
    if column.kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if column.kind == "money":
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if column.kind == "number":
        return value
    return ";".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def _csv_cell(value: Any, kind: Kind) -> str:
    if value is None:
        return ""
    if kind == "time":
        return str(value.strftime(TIME_FORMAT))
    if kind == "text":
        return protect_cell(value)
    return str(value)


_NUMBER_FORMATS = {"time": "yyyy-mm-dd hh:mm:ss", "date": "yyyy-mm-dd", "money": "0.00", "text": "@"}


def _xlsx(rows: Sequence[dict[str, Any]], cols: Sequence[Column], title: str) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=re.sub(r"[\\/?*\[\]:]", "_", title)[:31] or "register")
    sheet.freeze_panes = "A2"
    for n, c in enumerate(cols):
        sheet.column_dimensions[get_column_letter(n + 1)].width = 22 if c.kind in ("time", "text") else 12
    header = []
    for c in cols:
        cell = WriteOnlyCell(sheet, value=c.header)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    for row in rows:
        cells = []
        for c in cols:
            value = cell_value(row, c)
            if isinstance(value, str):
                value = ILLEGAL_CHARACTERS_RE.sub("", value)
            cell = WriteOnlyCell(sheet, value=value)
            if c.kind == "text" and value is not None:
                cell.data_type = "s"  # text, never a formula, whatever it starts with
            if c.kind in _NUMBER_FORMATS:
                cell.number_format = _NUMBER_FORMATS[c.kind]
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# A cell a spreadsheet would read as a formula (OWASP, CSV injection): = + - @, and a TAB or a CR in front.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def protect_cell(text: str) -> str:
    """Prefix a single quote to a cell that would run as a formula, so it is shown as text."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
