"""Exporting records as JSON lines or CSV, one record at a time (constant memory)."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, TextIO

from agentkeep.audit.models import AuditLog
from agentkeep.audit.schemas import AuditLogRead

ExportFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = tuple(AuditLogRead.model_fields)
# A cell starting with one of these is a formula to spreadsheet programs; user agents and
# resource ids come from clients, so such cells are prefixed with a quote (OWASP advice).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, dict) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


async def write_export(
    records: AsyncIterator[AuditLog] | AsyncIterator[Mapping[str, Any]], out: TextIO, fmt: ExportFormat
) -> int:
    """Write every record from `records` (rows, or listing rows as mappings: the console's
    export) to `out`; return how many were written."""
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    count = 0
    async for row in records:
        data = AuditLogRead.model_validate(row).model_dump(mode="json")
        if writer is not None:
            writer.writerow([_csv_cell(data[column]) for column in CSV_COLUMNS])
        else:
            # JSON keeps CR/LF and every other control character escaped: one record per line.
            out.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count
