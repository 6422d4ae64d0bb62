"""``fsapps ext ...``: the seed-003 extension records (:mod:`fsapps.domain.userdir`) from and to
files, and one at a time.

File formats:

- CSV: a header row with ``user`` and any of ``param.<name>``, ``variable.<name>``,
  ``attribute.<name>``; one extension a row; an empty cell sets nothing. Example::

      user,param.password,variable.effective_caller_id_name,attribute.number-alias
      1001,s3cret,Alice,2001

- YAML: a mapping of extension -> the seed's record::

      "1001":
        param: {password: s3cret}
        variable: {effective_caller_id_name: Alice}
        attribute: {number-alias: "2001"}

An import checks every row first; bad rows are reported with their line numbers and nothing is
written (``--skip-bad`` writes the good ones). Rows are written in pipelined batches; a progress
bar goes to stderr.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import yaml

from fsapps.context import Context
from fsapps.domain.userdir import (
    SECTIONS,
    BadExtension,
    Extension,
    UserDirectory,
    parse_record,
)


class Progress:
    """A one-line progress bar on ``stream``, redrawn at most every 0.1 s."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self._last < 0.1:
            return
        self._last = now
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        self.stream.write(f"\r{self.label} {done}/{self.total} [{bar:<30}] {share:4.0%}")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def file_format(path: str, given: str | None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise BadExtension(f"cannot tell the format of {path!r}: name it .csv, .yaml or .yml, "
                       "or pass --format")


def read_csv(text: str, domain: str) -> tuple[list[tuple[int, Extension]], list[str]]:
    """(line, extension) rows and the errors (``line N: why``) of a CSV file."""
    rows: list[tuple[int, Extension]] = []
    errors: list[str] = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return [], ["line 1: empty file, expected a header row"]
    header = [h.strip() for h in header]
    if "user" not in header:
        return [], [f"line 1: no 'user' column in {header!r}"]
    columns: list[tuple[str, str] | None] = []
    for name in header:
        if name == "user":
            columns.append(None)
            continue
        section, _, field = name.partition(".")
        if section not in SECTIONS or not field:
            return [], [f"line 1: column {name!r} is not user, param.<name>, variable.<name> "
                        "or attribute.<name>"]
        columns.append((section, field))
    where = header.index("user")
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(f"line {line}: {len(row)} cells, the header has {len(header)}")
            continue
        record: dict[str, dict[str, str]] = {s: {} for s in SECTIONS}
        for column, cell in zip(columns, row, strict=True):
            if column is not None and cell != "":
                record[column[0]][column[1]] = cell
        try:
            rows.append((line, parse_record(row[where].strip(), domain, record)))
        except BadExtension as exc:
            errors.append(f"line {line}: {exc}")
    return rows, errors


def read_yaml(text: str, domain: str) -> tuple[list[tuple[int, Extension]], list[str]]:
    """(line, extension) rows and the errors of a YAML mapping extension -> record."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [], [f"not YAML: {' '.join(str(exc).split())}"]
    if root is None:
        return [], []
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return [], ["line 1: expected a mapping of extension -> record"]
    rows: list[tuple[int, Extension]] = []
    errors: list[str] = []
    for key_node, _ in root.value:
        line = key_node.start_mark.line + 1
        user = yaml.safe_load(yaml.serialize(key_node))
        try:
            rows.append((line, parse_record(str(user), domain, data[user] or {})))
        except BadExtension as exc:
            errors.append(f"line {line}: {exc}")
    return rows, errors


def import_file(ctx: Context, domain: str, path: str, fmt: str | None = None,
                skip_bad: bool = False, stderr: TextIO | None = None) -> int:
    """Load ``path`` into ``cti_exten@<domain>``; 0 when every row was written, else 1."""
    err = stderr if stderr is not None else sys.stderr
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: cannot read: {exc}", file=err)
        return 1
    kind = file_format(path, fmt)
    rows, errors = (read_csv if kind == "csv" else read_yaml)(text, domain)
    seen: dict[str, int] = {}
    unique: list[tuple[int, Extension]] = []
    for line, ext in rows:
        if ext.user in seen:
            errors.append(f"line {line}: extension {ext.user!r} already on line {seen[ext.user]}")
            continue
        seen[ext.user] = line
        unique.append((line, ext))
    for message in errors:
        print(f"{path}: {message}", file=err)
    if errors and not skip_bad:
        print(f"{path}: {len(errors)} bad row(s); nothing imported (--skip-bad imports the "
              "others)", file=err)
        return 1
    directory = UserDirectory(ctx, domain)
    refused = directory.set_many([ext for _, ext in unique],
                                 progress=Progress("import", len(unique), err))
    for index, why in refused:
        print(f"{path}: line {unique[index][0]}: {why}", file=err)
    written = len(unique) - len(refused)
    print(f"{path}: {written} extension(s) imported into cti_exten@{domain}", file=err)
    return 1 if errors or refused else 0


def export(ctx: Context, domain: str, out: TextIO, fmt: str = "csv",
           stderr: TextIO | None = None) -> int:
    """Write every record of the domain to ``out``; malformed ones are reported and left out."""
    err = stderr if stderr is not None else sys.stderr
    directory = UserDirectory(ctx, domain)
    exts: list[Extension] = []
    bad = 0
    items = list(directory.all())
    progress = Progress("export", len(items), err)
    for done, (user, text) in enumerate(items, 1):
        try:
            exts.append(parse_record(user, domain, text))
        except BadExtension as exc:
            bad += 1
            print(f"skipped: {exc}", file=err)
        if done % 1000 == 0:
            progress(done)
    progress(len(items))
    if fmt == "yaml":
        yaml.safe_dump({e.user: {s: v for s, v in e.record().items() if v} for e in exts}, out,
                       allow_unicode=True, sort_keys=False)
    else:
        columns = sorted({f"{s}.{n}" for e in exts for s, v in e.record().items() for n in v},
                         key=lambda c: (SECTIONS.index(c.split(".")[0]), c))
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["user", *columns])
        for e in exts:
            record = e.record()
            writer.writerow([e.user, *(record[c.split(".", 1)[0]].get(c.split(".", 1)[1], "")
                                       for c in columns)])
    return 1 if bad else 0


def set_one(ctx: Context, domain: str, user: str, *, replace: bool = False,
            record_json: str | None = None, items: Iterable[tuple[str, str]] = ()) -> Extension:
    """Create or change one extension: its current record (unless ``replace``), then the
    ``record_json`` sections, then each (``section.name``, value) — an empty value removes
    the name. Returns what was stored."""
    directory = UserDirectory(ctx, domain)
    record: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if not replace:
        current = directory.get(user)
        if current is not None and current.user == user:
            record = {s: dict(v) for s, v in current.record().items()}
    if record_json:
        given = parse_record(user, domain, record_json)
        for section, values in given.record().items():
            record[section].update(values)
    for key, value in items:
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise BadExtension(f"{key!r}: expected param.<name>, variable.<name> or "
                               "attribute.<name>")
        if value == "":
            record[section].pop(name, None)
        else:
            record[section][name] = value
    ext = parse_record(user, domain, record)
    directory.set(ext)
    return ext


def show(ext: Extension) -> str:
    return json.dumps({"user": ext.user, "domain": ext.domain, **ext.record()},
                      ensure_ascii=False, indent=2)
