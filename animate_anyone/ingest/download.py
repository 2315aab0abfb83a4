"""Fetching source videos: URLs through yt-dlp's Python API, local files by copy.

Each source is stored once as ``media/sources/<source_id>.<ext>`` with a sidecar
``<source_id>.info.json`` written last, so a present sidecar means a complete download and a
rerun skips it without touching the network. yt-dlp's own download archive
(``media/sources/archive.txt``) dedupes the same video reached through another URL.

yt-dlp's internal retries are switched off: one attempt per call, and the caller (the Prefect
task) retries what :func:`classify_ytdlp_error` marks retryable, with backoff and jitter.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yt_dlp

from animate_anyone import storage
from animate_anyone.config import Clips, Download
from animate_anyone.errors import AnimateAnyoneError, DownloadError, MediaError, PermanentError, TransientDownloadError
from animate_anyone.files import atomic_path, write_json
from animate_anyone.ids import sha256_file
from animate_anyone.ingest.clips import check_video
from animate_anyone.media.video import ffmpeg_exe

_REGISTER = threading.Lock()
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


def canonical_url(url: str) -> str:
    """Loopback URLs lose their (ephemeral) port, so a re-served file keeps its source id."""
    return re.sub(r"^(https?://)(127\.0\.0\.1|localhost|\[::1\]):\d+", r"\1loopback", url)


@dataclass(frozen=True)
class SourceSpec:
    """One entry of a source list: an http(s) URL or a local file path."""

    kind: str  # "url" or "path"
    value: str

    @cached_property
    def source_id(self) -> str:
        """Stable id: from the (canonical) URL for URLs, from the bytes for local files."""
        if self.kind == "path" and Path(self.value).is_file():
            return "f" + sha256_file(Path(self.value))[:15]
        return "u" + hashlib.sha256(f"{self.kind}:{self.uri}".encode()).hexdigest()[:15]

    @property
    def uri(self) -> str:
        """What the tables record: the canonical URL, or the file's absolute file:// URI."""
        return canonical_url(self.value) if self.kind == "url" else Path(self.value).resolve().as_uri()


@dataclass(frozen=True)
class Fetched:
    """A source file on disk and what is known about it."""

    source_id: str
    uri: str
    path: str
    sha256: str
    extractor: str
    video_id: str
    title: str
    duplicate_of: str | None = None  # set when the archive says another source has this video
    skipped: bool = False  # True when it was already on disk


def parse_source(text: str) -> SourceSpec:
    """A URL or a path; anything else with a scheme is refused with the reason."""
    text = text.strip()
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        if text.startswith(("http://", "https://")):
            return SourceSpec("url", text)
        if text.startswith("file://"):
            return SourceSpec("path", text[len("file://"):])
        raise DownloadError(f"{text}: only http(s) URLs and local paths are accepted", "unsupported_scheme")
    return SourceSpec("path", text)


def _sidecar(out_dir: Path, source_id: str) -> Path:
    return out_dir / f"{source_id}.info.json"


def _read_sidecar(side: Path) -> dict:
    """A sidecar's record, its file taken from the sidecar's own folder: a copied or moved data
    root uses its own copy of the download, not the original's."""
    data = json.loads(side.read_text())
    here = side.parent / Path(data["path"]).name
    if here.exists() or (storage.store_of(side) is not None and storage.fetch(here)):
        data["path"] = str(here.resolve())
    return data


def already_fetched(out_dir: Path, source_id: str) -> Fetched | None:
    """The completed download of ``source_id`` if its sidecar and file are both on disk."""
    side = _sidecar(out_dir, source_id)
    if not storage.fetch(side):  # a store's mirror: fetched with its video when another machine got it
        return None
    data = _read_sidecar(side)
    if not storage.fetch(Path(data["path"])):
        return None
    return Fetched(**{**data, "skipped": True})


def _find_by(out_dir: Path, **match: str) -> Fetched | None:
    """A completed download whose sidecar has all the ``match`` values."""
    for side in storage.glob(out_dir, "*.info.json"):
        if not storage.fetch(side):
            continue
        data = _read_sidecar(side)
        if all(data.get(k) == v for k, v in match.items()) and storage.fetch(Path(data["path"])):
            return Fetched(**data)
    return None


class _QuietLogger:
    """Keeps yt-dlp quiet: its errors come back as exceptions, which are sorted and reported."""

    def debug(self, msg: str) -> None:
        """Progress and debug chatter is dropped."""

    info = warning = error = debug


_PERMANENT_PATTERNS = (
    "private video", "video unavailable", "this video is unavailable", "has been removed",
    "unsupported url", "sign in to confirm", "copyright", "not available in your country",
    "http error 400", "http error 401", "http error 403", "http error 404", "http error 410",
    "requested format is not available", "no video formats found", "is not a valid url",
)
_RETRYABLE_PATTERNS = (
    "http error 429", "too many requests", "http error 5", "timed out", "timeout",
    "connection refused", "connection reset", "temporary failure in name resolution",
    "remote end closed", "incompleteread", "network is unreachable", "errno 111", "errno 104",
    "bad gateway", "service unavailable", "unable to download webpage", "unable to connect",
)


def classify_ytdlp_error(url: str, exc: BaseException) -> AnimateAnyoneError:
    """Sort a yt-dlp failure into retryable (429, 5xx, network) or permanent (all else)."""
    text = str(exc)
    low = text.lower()
    low = re.sub(r"\x1b\[[0-9;]*m", "", low)
    status = None
    cause = getattr(exc, "exc_info", None)
    if cause and cause[1] is not None:
        status = getattr(cause[1], "status", None) or getattr(cause[1], "code", None)
    clean = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("ERROR: ", "").strip()
    if isinstance(status, int):
        if status == 429 or status >= 500:
            return TransientDownloadError(f"{url}: {clean}", f"http_{status}")
        return DownloadError(f"{url}: {clean}", f"http_{status}")
    if "did not get any data blocks" in low:
        return DownloadError(f"{url}: the server sent an empty file", "empty_file")
    if any(p in low for p in _PERMANENT_PATTERNS):
        m = re.search(r"http error (\d{3})", low)
        reason = f"http_{m.group(1)}" if m else ("unsupported_url" if "unsupported url" in low else "unavailable")
        return DownloadError(f"{url}: {clean}", reason)
    if any(p in low for p in _RETRYABLE_PATTERNS):
        m = re.search(r"http error (\d{3})", low)
        return TransientDownloadError(f"{url}: {clean}", f"http_{m.group(1)}" if m else "network")
    return DownloadError(f"{url}: {clean}", "download_failed")


def _ydl_options(cfg: Download, out_dir: Path, source_id: str) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "format": cfg.format_string(),
        "outtmpl": {"default": str(out_dir / f"{source_id}.%(ext)s")},
        "merge_output_format": "mp4",
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "file_access_retries": 0,
        "socket_timeout": cfg.socket_timeout_s,
        "overwrites": True,
        "logger": _QuietLogger(),
        "download_archive": str(out_dir / "archive.txt"),
    }
    if cfg.rate_limit_bytes_per_s:
        opts["ratelimit"] = cfg.rate_limit_bytes_per_s
    if cfg.sleep_between_s:
        opts["sleep_interval"] = cfg.sleep_between_s
    exe = ffmpeg_exe()
    if exe:
        opts["ffmpeg_location"] = exe
    return opts


def fetch_url(spec: SourceSpec, out_dir: Path, cfg: Download, checks: Clips | None = None) -> Fetched:
    """Download one URL with yt-dlp (one attempt), or return what an earlier run fetched.

    Dedupe: for site extractors, yt-dlp's archive (extractor + video id) spots the same video
    under another URL before downloading. The generic extractor's "id" is only the file name, so
    two different videos called ``video.mp4`` would collide: direct links skip the archive and
    are deduped by their bytes after downloading instead (as local files are). The first source
    to register the bytes keeps them; later ones are recorded as duplicates of it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_id = spec.source_id
    done = already_fetched(out_dir, source_id)
    if done:
        return done
    try:
        with yt_dlp.YoutubeDL(_ydl_options(cfg, out_dir, source_id)) as ydl:
            info = ydl.extract_info(spec.value, download=False)
            if info.get("_type") in ("playlist", "multi_video"):
                raise DownloadError(f"{spec.value}: is a playlist; list its videos one by one", "playlist")
            generic = info.get("extractor_key") == "Generic"
            if generic:  # never record file-name ids, so none can match later
                ydl.params["download_archive"] = None
            elif ydl.in_download_archive(info):
                other = _find_by(out_dir, extractor=info.get("extractor_key", ""), video_id=str(info.get("id")))
                if other and other.source_id != source_id:
                    return _duplicate(other, spec, out_dir)
            info = ydl.process_ie_result(info, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise classify_ytdlp_error(spec.value, exc) from exc
    except OSError as exc:
        raise TransientDownloadError(f"{spec.value}: {exc}", "network") from exc
    files = [d.get("filepath") for d in info.get("requested_downloads", []) if d.get("filepath")]
    path = Path(files[0]) if files else None
    if path is None or not path.exists():
        candidates = [p for p in out_dir.glob(f"{source_id}.*") if p.suffix in VIDEO_EXTS]
        if not candidates:
            raise DownloadError(f"{spec.value}: yt-dlp finished but wrote no video file", "no_file")
        path = candidates[0]
    if checks is not None:  # a file that can give no clip is not kept in the data root
        try:
            check_video(path, checks)
        except MediaError as exc:
            path.unlink(missing_ok=True)
            raise MediaError(f"{spec.value}: {exc.message}", exc.reason) from exc
    digest = sha256_file(path)
    fetched = Fetched(
        source_id=source_id, uri=spec.uri, path=str(path.resolve()), sha256=digest,
        extractor=str(info.get("extractor_key") or info.get("extractor") or "unknown"),
        video_id=str(info.get("id", "")), title=str(info.get("title") or ""),
    )
    with _REGISTER:  # concurrent downloads of the same bytes: exactly one is kept
        other = _find_by(out_dir, sha256=digest, duplicate_of=None) if generic else None
        if other and other.source_id != source_id:
            path.unlink()  # the same bytes are already kept under the other source
            return _duplicate(other, spec, out_dir)
        storage.publish(path)  # yt-dlp renamed it into place; the sidecar, written after, marks it done
        write_json(_sidecar(out_dir, source_id), fetched.__dict__)
    return fetched


def _duplicate(other: Fetched, spec: SourceSpec, out_dir: Path) -> Fetched:
    """Record ``spec`` as another name for ``other`` (its sidecar makes reruns skip it too)."""
    dup = Fetched(**{**other.__dict__, "source_id": spec.source_id, "uri": spec.uri,
                     "duplicate_of": other.source_id, "skipped": False})
    write_json(_sidecar(out_dir, spec.source_id), dup.__dict__)
    return dup


def fetch_path(spec: SourceSpec, out_dir: Path, checks: Clips | None = None) -> Fetched:
    """Bring a local file into the data root (hard link when possible, else copy), once it has
    passed ``checks``: a file that can give no clip is never linked in."""
    out_dir = Path(out_dir)
    src = Path(spec.value).expanduser()
    if not src.is_file():
        raise PermanentError(f"{spec.value}: no such file", "missing_file")
    if checks is not None:
        check_video(src, checks)
    source_id = spec.source_id
    done = already_fetched(out_dir, source_id)
    if done:
        return done
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = sha256_file(src)
    with _REGISTER:
        other = _find_by(out_dir, sha256=digest, duplicate_of=None)
        if other and other.source_id != source_id:
            return _duplicate(other, spec, out_dir)
        dest = out_dir / f"{source_id}{src.suffix.lower() or '.mp4'}"
        with atomic_path(dest) as tmp:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        fetched = Fetched(source_id=source_id, uri=spec.uri, path=str(dest.resolve()), sha256=digest,
                          extractor="local", video_id=source_id, title=src.stem)
        write_json(_sidecar(out_dir, source_id), fetched.__dict__)
    return fetched


def fetch(spec: SourceSpec, out_dir: Path, cfg: Download, checks: Clips | None = None) -> Fetched:
    """One source, fetched once: concurrent runs wait for the one already fetching it (a lock
    file per source), then find its sidecar and skip."""
    from filelock import FileLock

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir / f".{spec.source_id}.lock")):
        return fetch_url(spec, out_dir, cfg, checks) if spec.kind == "url" else fetch_path(spec, out_dir, checks)
