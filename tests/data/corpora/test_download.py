"""Tests for diffa.data.corpora.download: resumable MD5-checked fetch and one-time extraction."""
import functools
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from diffa.data.corpora import download
from diffa.data.corpora.download import DownloadError, extract, fetch, md5sum

PAYLOAD = bytes(range(256)) * 40


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src" / "part.tar.gz"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_fetch_downloads_and_verifies(tmp_path, source):
    dest = fetch(source.as_uri(), tmp_path / "dl" / "part.tar.gz", hashlib.md5(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "dl" / "part.tar.gz.part").exists()


def test_fetch_keeps_a_verified_file_without_downloading(tmp_path, source):
    dest = tmp_path / "part.tar.gz"
    dest.write_bytes(PAYLOAD)
    assert fetch((tmp_path / "gone").as_uri(), dest, md5sum(source)) == dest


def test_fetch_resumes_a_partial_download(tmp_path, source):
    dest = tmp_path / "part.tar.gz"
    # A partial file whose first bytes differ from the source: resuming keeps them (so the
    # checksum then fails), restarting would have replaced them.
    (tmp_path / "part.tar.gz.part").write_bytes(b"\xff" * 100)
    with pytest.raises(DownloadError, match=r"part\.tar\.gz\.part: MD5 .* delete .*part\.tar\.gz\.part"):
        fetch(source.as_uri(), dest, md5sum(source))
    assert (tmp_path / "part.tar.gz.part").read_bytes() == b"\xff" * 100 + PAYLOAD[100:]
    (tmp_path / "part.tar.gz.part").write_bytes(PAYLOAD[:100])
    assert fetch(source.as_uri(), dest, md5sum(source)).read_bytes() == PAYLOAD


def test_fetch_rejects_a_wrong_checksum(tmp_path, source):
    dest = tmp_path / "part.tar.gz"
    with pytest.raises(DownloadError, match=r"MD5 [0-9a-f]{32} != expected 0{32}"):
        fetch(source.as_uri(), dest, "0" * 32)
    assert not dest.exists()
    dest.write_bytes(b"corrupt")
    with pytest.raises(DownloadError, match=r"part\.tar\.gz: MD5 .* delete .*part\.tar\.gz and download again"):
        fetch(source.as_uri(), dest, md5sum(source))


def test_fetch_reports_curl_failures(tmp_path, monkeypatch):
    with pytest.raises(DownloadError, match=r"curl exited with \d+ fetching file://.*network and rerun, or put"):
        fetch((tmp_path / "missing.tar.gz").as_uri(), tmp_path / "x.tar.gz", "0" * 32)
    monkeypatch.setattr(download.shutil, "which", lambda name: None)
    with pytest.raises(DownloadError, match="curl is not installed"):
        fetch((tmp_path / "missing.tar.gz").as_uri(), tmp_path / "x.tar.gz", "0" * 32)


def make_tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_runs_once(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", {"LibriSpeech/x.txt": b"x"})
    marker = extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "LibriSpeech" / "x.txt").read_bytes() == b"x"
    (tmp_path / "out" / "LibriSpeech" / "x.txt").unlink()
    assert extract(archive, tmp_path / "out") == marker
    assert not (tmp_path / "out" / "LibriSpeech" / "x.txt").exists()


def test_extract_refuses_members_outside_the_target(tmp_path):
    archive = make_tar(tmp_path / "evil.tar.gz", {"../escaped.txt": b"x"})
    with pytest.raises(tarfile.FilterError):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / ".evil.tar.gz.extracted").exists()


@pytest.fixture
def http_server(source):
    """A local HTTP server for ``source``'s folder; like some mirrors it ignores Range requests."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_starts_over_when_the_server_cannot_resume(tmp_path, source, http_server):
    # curl exits 33 on a server without byte ranges; "rerun to resume" failed the same way forever
    dest = tmp_path / "part.tar.gz"
    (tmp_path / "part.tar.gz.part").write_bytes(b"\xff" * 100)
    assert fetch(f"{http_server}/part.tar.gz", dest, md5sum(source)).read_bytes() == PAYLOAD
    assert not (tmp_path / "part.tar.gz.part").exists()


def test_fetch_failure_names_no_partial_file_that_does_not_exist(tmp_path, source, http_server):
    with pytest.raises(DownloadError) as err:
        fetch(f"{http_server}/missing.tar.gz", tmp_path / "x.tar.gz", md5sum(source))
    assert not (tmp_path / "x.tar.gz.part").exists()
    assert ".part" not in str(err.value)
    assert f"or put the file at {tmp_path / 'x.tar.gz'} by hand" in str(err.value)
