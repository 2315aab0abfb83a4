"""The data root's layout, and atomic Parquet parts.

A table is ``tables/<table>/dataset=<name>/<part>.parquet``. A part holds the rows of one item
(a source, or one failed item), so rewriting an item replaces its rows instead of appending
duplicates, and a crash mid-write leaves only a ``.tmp`` file that no reader globs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from animate_anyone.errors import ConfigError
from animate_anyone.tables.schemas import SCHEMAS, WRITE_OPTIONS


@dataclass(frozen=True)
class DataRoot:
    """Where a pipeline's media, tables and catalog live."""

    path: Path

    @classmethod
    def from_uri(cls, uri: str | os.PathLike) -> "DataRoot":
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://"):]
        elif "://" in text:
            import fsspec

            protocol = text.split("://", 1)[0]
            try:
                fs = fsspec.filesystem(protocol)
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"data_root {uri!r}: fsspec has no usable filesystem for {protocol!r} ({exc})") from exc
            if not getattr(fs, "local_file", False) and protocol not in ("file", "local"):
                raise ConfigError(
                    f"data_root {uri!r}: ingest decodes and encodes media in place, so the data root must be "
                    f"a local or mounted filesystem (a path, or file://); mount {protocol!r} storage and give its path")
        return cls(Path(text).expanduser().resolve())

    @property
    def sources_dir(self) -> Path:
        return self.path / "media" / "sources"

    @property
    def clips_dir(self) -> Path:
        return self.path / "media" / "clips"

    @property
    def tables_dir(self) -> Path:
        return self.path / "tables"

    @property
    def catalog(self) -> Path:
        return self.path / "catalog.duckdb"

    def part_path(self, table: str, dataset: str, part: str) -> Path:
        return self.tables_dir / table / f"dataset={dataset}" / f"{part}.parquet"


def write_part(root: DataRoot, table: str, dataset: str, part: str, rows: list[dict] | pa.Table) -> Path:
    """Replace one part of ``table`` with ``rows`` (atomic: temporary file, then rename)."""
    schema = SCHEMAS[table]
    data = rows.select(schema.names).cast(schema) if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    dest = root.part_path(table, dataset, part)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    pq.write_table(data, tmp, compression="zstd", **WRITE_OPTIONS.get(table, {}))
    os.replace(tmp, dest)
    return dest


def list_parts(root: DataRoot, table: str, dataset: str) -> list[str]:
    """The part names of one dataset of ``table``."""
    return sorted(p.stem for p in (root.tables_dir / table / f"dataset={dataset}").glob("*.parquet"))


def delete_part(root: DataRoot, table: str, dataset: str, part: str) -> bool:
    path = root.part_path(table, dataset, part)
    if path.exists():
        path.unlink()
        return True
    return False


def read_part(root: DataRoot, table: str, dataset: str, part: str) -> list[dict]:
    path = root.part_path(table, dataset, part)
    return pq.read_table(path).to_pylist() if path.exists() else []


def read_table(root: DataRoot, table: str, dataset: str | None = None) -> pa.Table:
    """All parts of ``table`` (one dataset or all), with a ``dataset`` column."""
    base = root.tables_dir / table
    pattern = f"dataset={dataset}/*.parquet" if dataset else "dataset=*/*.parquet"
    parts = []
    for f in sorted(base.glob(pattern)):
        t = pq.read_table(f, schema=SCHEMAS[table])
        parts.append(t.append_column("dataset", pa.array([f.parent.name.split("=", 1)[1]] * len(t), pa.string())))
    if not parts:
        return SCHEMAS[table].empty_table().append_column("dataset", pa.array([], pa.string()))
    return pa.concat_tables(parts)
