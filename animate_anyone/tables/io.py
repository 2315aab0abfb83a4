"""The data root's layout, atomic Parquet parts, and ``Dataset``: one dataset's tables.

A table is ``tables/<table>/dataset=<name>/<part>.parquet``. A part holds the rows of one item
(a source, a shard, or one failed item), so rewriting an item replaces its rows instead of
appending duplicates. Parts are written to a temporary name unique to the writer and renamed
(``files.atomic_path``), so a crash leaves nothing a reader globs. On a local root the writes
take the data root's lock; on an object store (``storage``) each part is one PUT of a finished
file and the tables are read from the store through Arrow's filesystem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from animate_anyone import storage
from animate_anyone.config import PipelineConfig
from animate_anyone.files import atomic_path, data_root_lock, temp_name
from animate_anyone.tables.schemas import SCHEMAS, STORED_PRECISION, WRITE_OPTIONS


@dataclass(frozen=True)
class DataRoot:
    """Where a pipeline's media, tables and catalog live: a local folder (``path``), or an object
    store (``store``) whose mirror on this machine is ``path``."""

    path: Path
    store: storage.Store | None = None

    @classmethod
    def from_uri(cls, uri: str | os.PathLike) -> "DataRoot":
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://"):]
        elif "://" in text:
            protocol = text.split("://", 1)[0].lower()
            if protocol in ("file", "local"):
                text = text.split("://", 1)[1]
            else:
                store = storage.open_store(text)
                return cls(store.local, store)
        path = Path(text).expanduser().resolve()
        store = storage.store_of(path)  # a mirror's own folder names its store
        return cls(store.local, store) if store is not None and store.local == path else cls(path)

    def __reduce__(self):  # unpickled elsewhere (a Dask worker): that machine's own mirror of the store
        return (DataRoot.from_uri, (self.uri,)) if self.store is not None else (DataRoot, (self.path,))

    @property
    def uri(self) -> str:
        """What another process opens this root by: the store's URL, or the folder's path."""
        return self.store.url if self.store is not None else str(self.path)

    def exists(self, path: Path) -> bool:
        """Is ``path`` under this root here, or (a store) in the store?"""
        return storage.exists(path) if self.store is not None else Path(path).exists()

    def fetch(self, path: Path, fresh: bool | None = None) -> bool:
        """Make a file or folder of this root present here (a store: downloaded into the mirror)."""
        return storage.fetch(path, fresh) if self.store is not None else Path(path).exists()

    def glob(self, folder: Path, pattern: str) -> list[Path]:
        """Files under ``folder`` (a store: every machine's objects, as mirror paths)."""
        return storage.glob(folder, pattern) if self.store is not None else sorted(Path(folder).glob(pattern))

    # every folder the project keeps under a data root
    @property
    def media_dir(self) -> Path:
        return self.path / "media"

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

    @property
    def models_dir(self) -> Path:
        return self.path / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def snapshots_dir(self) -> Path:
        return self.path / "snapshots"

    @property
    def outputs_dir(self) -> Path:
        return self.path / "outputs"

    @property
    def evaluations_dir(self) -> Path:
        return self.path / "evaluations"

    @property
    def puppets_dir(self) -> Path:
        """Where the puppet world's videos are generated for the ``puppets`` source."""
        return self.media_dir / "puppets"

    @property
    def results_dir(self) -> Path:
        """Prefect's persisted task results for this data root (they live and die with the data)."""
        return self.path / ".prefect" / "results"

    def part_path(self, table: str, dataset: str, part: str) -> Path:
        return self.tables_dir / table / f"dataset={dataset}" / f"{part}.parquet"

    def media_uri(self, path: Path) -> str:
        """What the tables store for a media file: its path relative to the data root (POSIX
        separators), so a copied or moved data root reads its own files; a file outside the root
        keeps its absolute ``file://`` URI."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.path).as_posix()
        except ValueError:
            if self.store is not None and "media" in path.parts:  # another machine's mirror of this store
                return Path(*path.parts[path.parts.index("media"):]).as_posix()
            return path.as_uri()

    def media_path(self, uri: str, fetch: bool = True) -> Path:
        """The file a stored ``clip_uri``/``file_uri`` names, under this data root. Relative values
        are taken from the root; an absolute one written before paths were relative is read from
        this root when the same ``media/…`` file is here (a copied root), else where it says. On a
        store the file is fetched into the mirror first (unless ``fetch`` is False)."""
        text = unquote(urlparse(uri).path) if uri.startswith("file://") else uri
        path = Path(text)
        if not path.is_absolute():
            if self.store is not None and fetch:
                self.fetch(self.path / path)
            return self.path / path
        parts = path.parts
        if "media" in parts:
            k = len(parts) - 1 - parts[::-1].index("media")
            here = self.path.joinpath(*parts[k:])
            if self.store is not None and not self.owns(path):  # another machine's mirror: this one's copy
                if fetch:
                    self.fetch(here)
                return here
            if here.exists() or not path.exists():
                return here
        return path

    def owns(self, path: Path) -> bool:
        path = Path(path)
        return path == self.path or self.path in path.parents


def write_part(root: DataRoot, table: str, dataset: str, part: str, rows: list[dict] | pa.Table) -> Path:
    """Replace one part of ``table`` with ``rows`` (atomic: temporary file, then rename)."""
    data = _arrow(table, rows)
    dest = root.part_path(table, dataset, part)
    with data_root_lock(root.path), atomic_path(dest) as tmp:
        pq.write_table(data, tmp, compression="zstd", **WRITE_OPTIONS.get(table, {}))
    return dest


def write_parts(root: DataRoot, dataset: str, parts: list[tuple[str, str, list[dict] | pa.Table]]) -> list[Path]:
    """Replace several parts at once, all or none: every part is written to its temporary name
    first; only when all are written are they renamed into place, in the given order (put the
    part that marks the item done last). A failed write leaves every old part as it was."""
    staged: list[tuple[Path, Path]] = []
    with data_root_lock(root.path):
        try:
            for table, part, rows in parts:
                dest = root.part_path(table, dataset, part)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_name(dest)
                staged.append((tmp, dest))
                pq.write_table(_arrow(table, rows), tmp, compression="zstd", **WRITE_OPTIONS.get(table, {}))
            for tmp, dest in staged:
                os.replace(tmp, dest)
                storage.publish(dest)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
    return [dest for _, dest in staged]


def _arrow(table: str, rows: list[dict] | pa.Table) -> pa.Table:
    schema = SCHEMAS[table]
    data = rows.select(schema.names).cast(schema) if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    for column, step in STORED_PRECISION.get(table, {}).items():
        data = data.set_column(data.schema.get_field_index(column), schema.field(column), _rounded(data[column], step))
    return data


def _rounded(column: pa.ChunkedArray, step: int) -> pa.ChunkedArray:
    """A fixed-size float list column with every value rounded to a multiple of ``1/step``."""
    chunks = []
    for chunk in column.chunks:
        size = chunk.type.list_size
        flat = chunk.values.slice(chunk.offset * size, len(chunk) * size).to_numpy(zero_copy_only=False)
        values = (np.round(flat.astype(np.float64) * step) / step).astype(np.float32)
        chunks.append(pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), size,
                                                        mask=chunk.is_null() if chunk.null_count else None))
    return pa.chunked_array(chunks, column.type)


def list_parts(root: DataRoot, table: str, dataset: str) -> list[str]:
    """The part names of one dataset of ``table``."""
    return sorted(p.stem for p in root.glob(root.tables_dir / table / f"dataset={dataset}", "*.parquet"))


def delete_part(root: DataRoot, table: str, dataset: str, part: str) -> bool:
    path = root.part_path(table, dataset, part)
    with data_root_lock(root.path):
        found = path.exists()
        path.unlink(missing_ok=True)
        if root.store is not None and root.store.exists(path):
            root.store.remove(path)
            found = True
    return found


def read_part(root: DataRoot, table: str, dataset: str, part: str) -> list[dict]:
    path = root.part_path(table, dataset, part)
    if root.store is not None:
        remote = root.store.remote(path)
        if not root.store.exists(path):
            return []
        return pq.read_table(remote, filesystem=root.store.arrow_filesystem()).to_pylist()
    return pq.read_table(path).to_pylist() if path.exists() else []


def table_dataset(root: DataRoot, table: str, dataset: str | None = None) -> pads.Dataset | pa.Table:
    """The parts of ``table`` (one dataset or all) as one Arrow dataset whose ``dataset`` column
    comes from the hive partition; an empty table of the schema when there is no part yet."""
    base = root.tables_dir / table
    pattern = f"dataset={dataset}/*.parquet" if dataset else "dataset=*/*.parquet"
    schema = SCHEMAS[table].append(pa.field("dataset", pa.string()))
    part = pads.partitioning(pa.schema([("dataset", pa.string())]), flavor="hive")
    if root.store is not None:  # the store's parts, read where they are
        files = [root.store.remote(f) for f in root.glob(base, pattern)]
        if not files:
            return schema.empty_table()
        return pads.dataset(files, schema=schema, format="parquet", partitioning=part,
                            partition_base_dir=root.store.remote(base), filesystem=root.store.arrow_filesystem())
    files = sorted(str(f) for f in base.glob(pattern))
    if not files:
        return schema.empty_table()
    return pads.dataset(files, schema=schema, format="parquet", partitioning=part, partition_base_dir=str(base))


def read_table(root: DataRoot, table: str, dataset: str | None = None, where: dict | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """Rows of ``table`` (one dataset or all), with a ``dataset`` column.

    ``where`` ({column: value or list of values}) is pushed into the Parquet scan: row groups
    whose statistics exclude the values are skipped, so one clip's poses cost that clip's rows.
    """
    data = table_dataset(root, table, dataset)
    if isinstance(data, pa.Table):  # no part yet
        return data.select(columns + ["dataset"]) if columns else data
    expr = None
    for col, value in (where or {}).items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        term = pc.field(col).isin(list(values))
        expr = term if expr is None else expr & term
    cols = None if columns is None else list(dict.fromkeys(columns + ["dataset"]))
    return data.to_table(filter=expr, columns=cols)


class Dataset:
    """One dataset of a data root: its paths, its parts and filtered reads of its tables."""

    def __init__(self, root: DataRoot | str | os.PathLike, name: str):
        self.root = root if isinstance(root, DataRoot) else DataRoot.from_uri(root)
        self.name = name

    @classmethod
    def of(cls, cfg: PipelineConfig) -> "Dataset":
        """The dataset a pipeline configuration writes (its ``data_root`` and ``dataset``)."""
        return cls(cfg.data_root, cfg.dataset)

    def __repr__(self) -> str:
        return f"Dataset({self.root.uri!r}, {self.name!r})"

    def part_path(self, table: str, part: str) -> Path:
        return self.root.part_path(table, self.name, part)

    def write(self, table: str, part: str, rows: list[dict] | pa.Table) -> Path:
        return write_part(self.root, table, self.name, part, rows)

    def write_all(self, parts: list[tuple[str, str, list[dict] | pa.Table]]) -> list[Path]:
        """(table, part, rows) triples replaced all or none (see :func:`write_parts`)."""
        return write_parts(self.root, self.name, parts)

    def read_part(self, table: str, part: str) -> list[dict]:
        return read_part(self.root, table, self.name, part)

    def delete(self, table: str, part: str) -> bool:
        return delete_part(self.root, table, self.name, part)

    def parts(self, table: str) -> list[str]:
        return list_parts(self.root, table, self.name)

    def read(self, table: str, where: dict | None = None, columns: list[str] | None = None) -> pa.Table:
        return read_table(self.root, table, self.name, where, columns)

    def lock(self):
        """The data root's write lock (see ``files.data_root_lock``)."""
        return data_root_lock(self.root.path)
