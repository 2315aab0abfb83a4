"""yt-dlp downloads from a loopback server: what is fetched, skipped, deduped and how errors sort."""
from __future__ import annotations

import pytest

from animate_anyone.config import Download
from animate_anyone.errors import DownloadError, PermanentError, TransientDownloadError, is_retryable
from animate_anyone.ids import sha256_file
from animate_anyone.ingest.download import already_fetched, canonical_url, fetch, parse_source

CFG = Download(max_height=720)


def test_download_then_skip_without_network(fault_server, bad_media, tmp_path):
    url = fault_server.url("good.mp4")
    first = fetch(parse_source(url), tmp_path, CFG)
    assert first.sha256 == sha256_file(bad_media / "good.mp4") and not first.skipped
    assert first.extractor == "Generic" and first.video_id == "good"
    hits = sum(fault_server.hits.values())
    again = fetch(parse_source(url), tmp_path, CFG)
    assert again.skipped and again.path == first.path
    assert sum(fault_server.hits.values()) == hits, "a finished download must not touch the network"
    assert already_fetched(tmp_path, first.source_id) is not None


def test_same_bytes_under_another_url_are_a_duplicate(fault_server, tmp_path):
    a = fetch(parse_source(fault_server.url("good.mp4")), tmp_path, CFG)
    b = fetch(parse_source(fault_server.url("mirror/good.mp4")), tmp_path, CFG)
    assert b.duplicate_of == a.source_id and b.source_id != a.source_id and b.path == a.path
    assert len(list(tmp_path.glob("*.mp4"))) == 1


def test_direct_links_with_the_same_file_name_are_not_confused(fault_server, tmp_path):
    """yt-dlp's generic "id" is the file name; two different videos called good.mp4 stay two."""
    a = fetch(parse_source(fault_server.url("good.mp4")), tmp_path, CFG)
    b = fetch(parse_source(fault_server.url("other/good.mp4")), tmp_path, CFG)
    assert a.video_id == b.video_id == "good"
    assert b.duplicate_of is None and a.sha256 != b.sha256 and len(list(tmp_path.glob("*.mp4"))) == 2


def test_loopback_port_does_not_change_the_source_id():
    a = parse_source("http://127.0.0.1:4000/v/puppet.mp4")
    b = parse_source("http://127.0.0.1:5123/v/puppet.mp4")
    assert a.source_id == b.source_id and a.uri == "http://loopback/v/puppet.mp4"
    assert canonical_url("https://example.org:8443/a.mp4") == "https://example.org:8443/a.mp4"


@pytest.mark.parametrize("path, error, reason", [
    ("404/clip.mp4", DownloadError, "http_404"),
    ("500/clip.mp4", TransientDownloadError, "http_500"),
    ("page.html", DownloadError, "unsupported_url"),
])
def test_http_failures_sort_into_retryable_or_not(fault_server, tmp_path, path, error, reason):
    url = fault_server.url(path)
    with pytest.raises(error) as e:
        fetch(parse_source(url), tmp_path, CFG)
    assert e.value.reason == reason and url in str(e.value)
    assert is_retryable(e.value) == (error is TransientDownloadError)


def test_unreachable_host_is_retryable(closed_port_url, tmp_path):
    with pytest.raises(TransientDownloadError) as e:
        fetch(parse_source(closed_port_url), tmp_path, CFG)
    assert e.value.reason == "network" and "refused" in str(e.value).lower()


def test_only_http_and_local_paths(tmp_path):
    with pytest.raises(DownloadError) as e:
        parse_source("ftp://example.org/v.mp4")
    assert "ftp://example.org/v.mp4" in str(e.value)
    with pytest.raises(PermanentError) as e:
        fetch(parse_source(str(tmp_path / "missing.mp4")), tmp_path / "out", CFG)
    assert "missing.mp4" in str(e.value) and e.value.reason == "missing_file"


def test_local_file_is_brought_in_by_content(bad_media, tmp_path):
    got = fetch(parse_source(str(bad_media / "good.mp4")), tmp_path, CFG)
    assert got.extractor == "local" and got.source_id.startswith("f")
    assert got.sha256 == sha256_file(bad_media / "good.mp4")
    same = fetch(parse_source(f"file://{bad_media / 'mirror' / 'good.mp4'}"), tmp_path, CFG)
    assert same.source_id == got.source_id  # same bytes, same id


@pytest.fixture(scope="module")
def two_size_page(tmp_path_factory):
    """An HTML5 page offering the same dance at 192x320 and 576x960, as many sites do."""
    from animate_anyone import synthetic

    out = tmp_path_factory.mktemp("page")
    for name, w, h in (("small", 192, 320), ("large", 576, 960)):
        shot = synthetic.ShotSpec(70, 4, 3, "wave", synthetic.Camera(0.5))
        synthetic.write_video(synthetic.VideoSpec(name, w, h, (shot,)), out)
    (out / "dance.html").write_text(
        "<html><head><title>Dance</title></head><body><video controls>"
        '<source src="large.mp4" type="video/mp4" label="960p" res="960">'
        '<source src="small.mp4" type="video/mp4" label="320p" res="320"></video></body></html>')
    return out


@pytest.mark.parametrize("cap, size", [(480, (192, 320)), (1080, (576, 960))])
def test_height_cap_picks_the_best_format_under_it(two_size_page, tmp_path, cap, size):
    from animate_anyone.ingest.serve import serve_directory
    from animate_anyone.media.video import probe

    with serve_directory(two_size_page) as base:
        got = fetch(parse_source(f"{base}/dance.html"), tmp_path, Download(max_height=cap))
    info = probe(got.path)
    assert (info.width, info.height) == size and got.title.startswith("Dance")


def test_height_cap_below_every_format_is_refused(two_size_page, tmp_path):
    from animate_anyone.ingest.serve import serve_directory

    with serve_directory(two_size_page) as base, pytest.raises(DownloadError) as e:
        fetch(parse_source(f"{base}/dance.html"), tmp_path, Download(max_height=240))
    assert "format" in str(e.value).lower() and not is_retryable(e.value)


def test_rate_limit_slows_the_download(two_size_page, tmp_path):
    import time

    from animate_anyone.ingest.serve import serve_directory

    size = (two_size_page / "large.mp4").stat().st_size
    limit = max(1024, size // 2)  # about two seconds for the file
    with serve_directory(two_size_page) as base:
        t0 = time.perf_counter()
        fetch(parse_source(f"{base}/large.mp4"), tmp_path, Download(rate_limit_bytes_per_s=limit))
        elapsed = time.perf_counter() - t0
    assert elapsed >= 0.7 * size / limit, f"{size} bytes at {limit} B/s took {elapsed:.2f} s"
