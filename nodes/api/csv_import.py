"""Parsing and validating a CSV import of contacts, all of it before anything is stored.

Format: UTF-8 (a BOM is allowed), comma-separated, first line a header naming columns among
``name,phone,mobile,email,language,groups`` (``name`` required, any order, no unknown nor
repeated column); ``groups`` holds group names separated by ``;``. Rows whose cells are all
empty (spreadsheet leftovers) are skipped; every other row is validated.

Line numbers are the file's physical lines, the header being line 1 (a quoted cell spanning
lines counts from the line it starts on). Pure functions without aiohttp: the handler runs
:func:`parse_contacts_csv` in a worker thread so that a 100,000-row import does not stall the
event loop.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from nodes.api.validate import RawContact, check_contact
from replication.store_api import ContactIn

COLUMNS = ("name", "phone", "mobile", "email", "language", "groups")
MAX_ROWS = 100_000
MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    problem: str

    def as_json(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "problem": self.problem}


class CsvRefused(Exception):
    """The import is refused; ``errors`` lists at most MAX_REPORTED_ERRORS of ``count``."""

    def __init__(self, errors: list[LineError], count: int) -> None:
        super().__init__(f"{count} problems in the CSV import")
        self.errors = errors
        self.count = count


class CsvTooLarge(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(f"more than {MAX_ROWS} rows (line {line})")
        self.line = line


class CsvUnreadable(Exception):
    """Not decodable or not parseable as CSV at all."""


def _header(row: list[str]) -> tuple[list[str], list[LineError]]:
    columns = [cell.strip().lower() for cell in row]
    errors: list[LineError] = []
    if len(columns) == 1 and ";" in columns[0]:
        errors.append(LineError(1, "header", "columns must be separated by commas, not ';'"))
        return columns, errors
    seen: set[str] = set()
    for column in columns:
        if column not in COLUMNS:
            errors.append(LineError(
                1, column or "header", f"unknown column (known: {', '.join(COLUMNS)})",
            ))
        elif column in seen:
            errors.append(LineError(1, column, "repeated column"))
        seen.add(column)
    if "name" not in seen:
        errors.append(LineError(1, "name", "missing column"))
    return columns, errors


def parse_contacts_csv(data: bytes) -> list[ContactIn]:
    """Every contact of the file, or :class:`CsvRefused` listing the problems line by line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CsvUnreadable(
            f"not UTF-8 (byte {e.start}); export the file as 'CSV UTF-8'",
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    errors: list[LineError] = []
    count = 0
    contacts: list[ContactIn] = []

    def refuse(error: LineError) -> None:
        nonlocal count
        count += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(error)

    try:
        header_row = next(reader, None)
        if header_row is None:
            raise CsvRefused([LineError(1, "header", "empty file")], 1)
        columns, header_errors = _header(header_row)
        if header_errors:
            raise CsvRefused(header_errors, len(header_errors))
        index = {column: i for i, column in enumerate(columns)}
        rows = 0
        line = reader.line_num + 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            rows += 1
            if rows > MAX_ROWS:
                raise CsvTooLarge(start)
            if len(row) != len(columns):
                refuse(LineError(start, "line", f"{len(row)} fields, {len(columns)} expected"))
                continue

            def cell(column: str, row: list[str] = row) -> str | None:
                i = index.get(column)
                return row[i] if i is not None else None

            groups = tuple(g for g in (cell("groups") or "").split(";") if g.strip())
            contact, problems = check_contact(RawContact(
                name=cell("name"), phone=cell("phone"), mobile=cell("mobile"),
                email=cell("email"), language=cell("language"), groups=groups,
            ))
            for field, problem in problems:
                refuse(LineError(start, field, problem))
            if contact is not None and not problems:
                contacts.append(contact)
    except csv.Error as e:
        refuse(LineError(reader.line_num, "line", f"unreadable CSV: {e}"))
    if count:
        raise CsvRefused(errors, count)
    if not contacts:
        raise CsvRefused([LineError(2, "line", "no contact in the file")], 1)
    return contacts
