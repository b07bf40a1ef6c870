"""Registers as JSON or as a CSV a spreadsheet opens (UTF-8 with BOM, so Excel reads Chinese)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Literal

from fastapi.responses import JSONResponse, Response

Format = Literal["json", "csv"]


def register_response(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: Format, filename: str
) -> Response:
    if fmt == "json":
        return JSONResponse({"items": list(rows), "count": len(rows)})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return protect_cell(";".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value))


# A cell a spreadsheet would read as a formula (OWASP, CSV injection): = + - @, and a TAB or a CR in front.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def protect_cell(text: str) -> str:
    """Prefix a single quote to a cell that would run as a formula, so it is shown as text."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
