"""Object-storage data roots: ``s3://bucket/prefix`` (or any fsspec store) behind a local mirror.

A data root on object storage is the store plus a folder on this machine that mirrors it (the
*mirror*: ``$ANIMATE_ANYONE_CACHE/stores/<protocol>/<bucket>/<prefix>``, by default under
``~/.cache/animate-anyone``). The code that decodes, encodes and trains works on the mirror's
files as on any local folder; this module moves files between the two:

- **publish**: a file the project writes appears under its name only when complete (written to a
  temporary name, then renamed: ``files.atomic_path``). In a mirror the rename is followed by an
  upload, and the upload is what others see: one PUT of the finished object, so a reader on
  another machine never sees half a clip or half a Parquet part. A folder (a model, a
  checkpoint) is uploaded file by file with its marker last (``manifest.json``, ``trainer.json``),
  and readers take a folder only once its marker is there.
- **fetch**: before a file is opened, it is downloaded into the mirror when it is not there yet
  (clips and sources are named by their content, so a copy once fetched stays right); files that
  change under one name (``latest.json``, a model's folder saved again) are fetched again when the
  store's copy differs.
- **tables** are read from the store itself through Arrow's filesystem (``arrow_filesystem``), so
  a query sees every machine's parts without copying them.

Consistency: every machine must see an object as soon as its PUT returns, and see a listing that
includes it (read-after-write and list-after-write). S3 gives both since December 2020, as do GCS,
Azure Blob Storage and MinIO. On a store that lists late, a part written by another machine is
missed by a query until the listing catches up (nothing is lost or half-read: objects appear
whole); a rerun then sees it.

Credentials come from where the store's fsspec package looks (for S3: ``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and ``~/.aws``, instance roles; ``AWS_ENDPOINT_URL``
for MinIO or another S3-compatible server). A data-root URI that carries them
(``s3://key:secret@bucket``) is refused, so they never reach a log, a table or an artifact.
"""
from __future__ import annotations

import hashlib
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from animate_anyone.errors import ConfigError, PermanentError, RetryableError

MARKER = ".animate-anyone-store"  # in a mirror's folder: the store it mirrors (so a path names its store)
LINK_SUFFIX = ".link"  # a symbolic link in a mirror is kept in the store as NAME.link holding the target's name
FOLDER_MARKERS = ("manifest.json", "trainer.json")  # uploaded last; a folder without one is not complete
FRESH_NAMES = ("latest.json", "manifest.json", "job.json")  # rewritten under one name: compare before reuse
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
            "abfss": "adlfs"}
PROCESS_LOCAL = ("memory", "cached", "simplecache", "filecache", "blockcache")


class StoreError(RetryableError):
    """The store could not be reached or refused a request this time; the message names the object."""


class UnusableStore(PermanentError):
    """The store cannot hold a data root (no package, no bucket, no permission); the message says which."""


def cache_home() -> Path:
    return Path(os.environ.get("ANIMATE_ANYONE_CACHE") or Path.home() / ".cache" / "animate-anyone").expanduser()


@dataclass(frozen=True)
class Store:
    """An fsspec store holding a data root (``url``) and this machine's mirror of it (``local``)."""

    url: str
    protocol: str
    base: str  # bucket/prefix, without the protocol
    local: Path

    def __reduce__(self):  # another process (a Dask worker) opens it again: its own mirror, its own client
        return (open_store, (self.url,))

    @classmethod
    def open(cls, uri: str) -> "Store":
        protocol, rest = uri.split("://", 1)
        protocol = protocol.lower()
        if protocol in PROCESS_LOCAL:
            raise ConfigError(f"data_root {uri!r}: a {protocol}:// filesystem lives inside one process, and the "
                              "pipeline's workers and training processes are many; give a folder or a shared store "
                              "(s3://, gs://, az://)")
        netloc = rest.split("/", 1)[0]
        if "@" in netloc:
            raise ConfigError(f"data_root {protocol}://…@{netloc.split('@', 1)[1]}: credentials do not belong in the "
                              "data root's URI (they would land in logs and tables); set them where the store's client "
                              "reads them (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws)")
        base = rest.strip("/")
        while "//" in base:
            base = base.replace("//", "/")
        if not base or any(p in (".", "..") for p in base.split("/")):
            raise ConfigError(f"data_root {uri!r}: give a bucket and an optional prefix, like s3://bucket/datasets/dance")
        local = cache_home() / "stores" / protocol / base
        store = cls(f"{protocol}://{base}", protocol, base, local)
        store.fs  # noqa: B018 — fail here, with the package to install, not at the first write
        return store

    @property
    def fs(self):
        import fsspec

        try:
            return fsspec.filesystem(self.protocol)
        except ImportError as exc:
            package = PACKAGES.get(self.protocol) or f"the fsspec package for {self.protocol!r}"
            raise ConfigError(f"data_root {self.url}: install {package} to keep a data root there "
                              f"(pip install {package}); {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"data_root {self.url}: fsspec knows no store {self.protocol!r} ({exc})") from exc

    # --- names -------------------------------------------------------------------------------
    def remote(self, path: Path | str) -> str:
        """The store's name for a mirror path (``bucket/prefix/relative/path``)."""
        rel = Path(path).relative_to(self.local).as_posix()
        return self.base if rel == "." else f"{self.base}/{rel}"

    def url_of(self, path: Path | str) -> str:
        return f"{self.protocol}://{self.remote(path)}"

    def mirror(self, remote: str) -> Path:
        rel = remote.strip("/")[len(self.base):].strip("/")
        return self.local / rel if rel else self.local

    def owns(self, path: Path | str) -> bool:
        path = Path(path)
        return path == self.local or self.local in path.parents

    # --- the mirror ----------------------------------------------------------------------------
    def prepare(self, write: bool = True) -> None:
        """Make the mirror and, when ``write``, check that the store takes an object (one probe
        PUT and DELETE): a missing bucket or credentials fail here, with the store named."""
        self.local.mkdir(parents=True, exist_ok=True)
        marker = self.local / MARKER
        if not marker.is_file():
            tmp = marker.with_name(f"{MARKER}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(self.url + "\n")
            os.replace(tmp, marker)
        if write:
            probe = f"{self.base}/.write-probe-{uuid.uuid4().hex}"
            try:
                self.fs.pipe_file(probe, b"")
                self.fs.rm_file(probe)
            except Exception as exc:  # noqa: BLE001 — every client raises its own kinds
                raise UnusableStore(f"data root {self.url}: cannot write there ({_why(exc)}); check the bucket exists "
                                    "and the credentials in the environment or profile may write it",
                                    "unusable_data_root") from exc

    # --- moving files --------------------------------------------------------------------------
    def publish(self, path: Path) -> None:
        """Upload a finished mirror file or folder (folder markers last; a link as NAME.link)."""
        path = Path(path)
        try:
            if path.is_symlink():
                self.fs.pipe_file(self.remote(path) + LINK_SUFFIX, os.readlink(path).encode())
                return
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
                files.sort(key=lambda p: p.name in FOLDER_MARKERS)
                stale = set(self._files(self.remote(path)))
                for f in files:
                    self.fs.put_file(str(f), self.remote(f))
                    stale.discard(self.remote(f))
                for name in stale:  # what an older save of this folder had and this one has not
                    self.fs.rm_file(name)
                return
            self.fs.put_file(str(path), self.remote(path))
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot upload {path} to {self.url_of(path)} ({_why(exc)})", "store_error") from exc

    def fetch(self, path: Path, fresh: bool | None = None) -> bool:
        """Make ``path`` (a mirror file or folder) present here from the store; False if the store
        has no such object either.

        A file is fetched when it is missing here, or (``fresh``, by default for ``FRESH_NAMES``)
        when its content differs from the store's. A folder is taken as one save: when the
        store's marker (``manifest.json``, ``trainer.json``) is the one here, nothing moves;
        when it differs, every file is fetched again, the marker last; a folder without a marker
        fetches the files missing here or of another size."""
        path = Path(path)
        fresh = (path.name in FRESH_NAMES) if fresh is None else fresh
        if path.exists() and not fresh and not path.is_dir():
            return True
        remote = self.remote(path)
        fs = self.fs
        try:
            fs.invalidate_cache(remote)
            kind = fs.info(remote)["type"] if fs.exists(remote) else None
            if kind is None:
                return self._fetch_link(path, remote)
            if kind == "directory":
                self._fetch_folder(remote)
                return True
            self._get(remote, path, "content" if fresh else "missing")
            return True
        except (FileNotFoundError, StoreError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot read {self.url_of(path)} ({_why(exc)})", "store_error") from exc

    def _fetch_link(self, path: Path, remote: str) -> bool:
        link = remote + LINK_SUFFIX
        if not self.fs.exists(link):
            return path.exists()
        target = self.fs.cat_file(link).decode().strip()
        self.fetch(path.parent / target)
        if not (path.is_symlink() and os.readlink(path) == target):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
            os.symlink(target, tmp)
            os.replace(tmp, path)
        return True

    def _fetch_folder(self, remote: str) -> None:
        self.fs.invalidate_cache(remote)
        listing = self.fs.find(remote, detail=True)
        depth = remote.count("/") + 1
        mark = next((n for n in sorted(listing) if n.count("/") == depth and n.rsplit("/", 1)[1] in FOLDER_MARKERS),
                    None)
        if mark is not None:
            here = self.mirror(mark)
            if here.is_file() and _same(listing[mark], here):
                return  # the same save is here already
        for name in sorted(listing, key=lambda n: n == mark):
            self._get(name, self.mirror(name), "always" if mark is not None else "size", listing[name])
        if mark is not None:  # another save: what the older one had and this one has not goes
            wanted = {self.mirror(n) for n in listing}
            for f in self.mirror(remote).rglob("*"):
                if f.is_file() and not f.name.startswith(".") and f not in wanted:
                    f.unlink()

    def _get(self, remote: str, dest: Path, when: str, info: dict | None = None) -> None:
        """Download ``remote`` to ``dest`` (atomically) unless ``when`` says the copy here will do:
        ``missing`` (it is here), ``size`` (here, of the same size), ``content`` (here, the same
        bytes), ``always`` (never)."""
        if dest.is_file() and when != "always":
            if when == "missing":
                return
            info = info or self.fs.info(remote)
            if when == "size" and int(info.get("size") or -1) == dest.stat().st_size:
                return
            if when == "content" and _same(info, dest):
                return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.fs.get_file(remote, str(tmp))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def _files(self, remote: str) -> list[str]:
        fs = self.fs
        fs.invalidate_cache(remote)
        try:
            return sorted(fs.find(remote))
        except FileNotFoundError:
            return []

    def exists(self, path: Path) -> bool:
        remote = self.remote(path)
        self.fs.invalidate_cache(remote)
        return bool(self.fs.exists(remote) or self.fs.exists(remote + LINK_SUFFIX))

    def glob(self, folder: Path, pattern: str) -> list[Path]:
        """Mirror paths of the store's objects under ``folder`` matching ``pattern`` (one level,
        or ``*/x`` for two)."""
        remote = self.remote(folder)
        self.fs.invalidate_cache(remote)
        return sorted(self.mirror(p) for p in self.fs.glob(f"{remote}/{pattern}"))

    def remove(self, path: Path) -> None:
        remote = self.remote(path)
        fs = self.fs
        fs.invalidate_cache(remote)
        for name in (remote, remote + LINK_SUFFIX):
            if fs.exists(name):
                fs.rm(name, recursive=True)

    def arrow_filesystem(self):
        """Arrow's view of the store (``pyarrow.fs.PyFileSystem`` over fsspec): tables are read
        from the store directly, with column and row-group pruning."""
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.fs))


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


def _same(info: dict, local: Path) -> bool:
    """Is the local file the store's object? Size, then the ETag where it is a plain MD5 (used on
    small files: markers and pointers)."""
    if int(info.get("size") or -1) != local.stat().st_size:
        return False
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if len(etag) == 32 and "-" not in etag:
        return hashlib.md5(local.read_bytes()).hexdigest() == etag
    return True


# --- which mirror a path is in -------------------------------------------------------------------

_stores: dict[str, Store] = {}
_registry = threading.Lock()


def is_store_uri(text: str) -> bool:
    return "://" in text and not text.lower().startswith("file://")


def open_store(uri: str) -> Store:
    """The store at ``uri`` with its mirror folder made (and marked) on this machine."""
    store = Store.open(uri)
    with _registry:
        known = _stores.get(str(store.local))
        if known is not None:
            return known
        store.prepare(write=False)
        _stores[str(store.local)] = store
    return store


def store_of(path: Path | str) -> Store | None:
    """The store whose mirror holds ``path`` (this process opened it, or the mirror's marker names it)."""
    path = Path(path)
    for store in list(_stores.values()):
        if store.owns(path):
            return store
    for folder in (path, *path.parents):
        marker = folder / MARKER
        if marker.is_file():
            return open_store(marker.read_text().strip())
    return None


def publish(path: Path | str) -> None:
    """Upload ``path`` if it lies in a mirror (called after every atomic rename)."""
    store = store_of(path)
    if store is not None:
        store.publish(Path(path))


def fetch(path: Path | str, fresh: bool | None = None) -> bool:
    """Is ``path`` here, after fetching it from its store when it lies in a mirror?"""
    store = store_of(path)
    if store is None:
        return Path(path).exists()
    return store.fetch(Path(path), fresh)


def exists(path: Path | str) -> bool:
    """Is ``path`` here, or in its store (without fetching it)?"""
    store = store_of(path)
    return Path(path).exists() if store is None else (Path(path).exists() or store.exists(Path(path)))


def unpublish(path: Path | str) -> None:
    """Remove ``path`` from its store (after it was removed here)."""
    store = store_of(path)
    if store is not None:
        store.remove(Path(path))


def glob(folder: Path | str, pattern: str) -> list[Path]:
    """Paths under ``folder`` matching ``pattern``: the store's objects for a mirror (what every
    machine wrote), the folder's files otherwise."""
    store = store_of(folder)
    if store is None:
        return sorted(Path(folder).glob(pattern))
    return store.glob(Path(folder), pattern)


def shown(path: Path | str) -> str:
    """How a path is shown to a person: a mirror file by its store URL (where everyone finds it),
    this machine's copy in brackets."""
    store = store_of(path)
    return str(path) if store is None or not store.owns(path) else f"{store.url_of(path)} (here: {path})"

