"""candle_lab.data.fetch_file against a real local HTTP server (no network needed)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from candle_lab.data import default_cache_dir, fetch_file, md5sum
from candle_lab.errors import CandleLabError


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = _tar_gz({"P3B1_data/train.csv": b"a,b\n1,2\n", "P3B1_data/readme.txt": b"synthetic\n"})
EVIL = _tar_gz({"../escape.txt": b"gotcha\n"})


def _tar_with_link() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("data/passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    return buf.getvalue()


LINK = _tar_with_link()
PLAIN = b"x,y\n0,1\n1,0\n"
FILES = {"/data/P3B1_data.tgz": ARCHIVE, "/data/table.csv": PLAIN, "/data/evil.tar.gz": EVIL, "/data/link.tar": LINK}


class Server:
    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = FILES.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def test_download_then_cache_hit(server: Server, tmp_path: Path) -> None:
    url = server.url("/data/table.csv")
    path = fetch_file(url, cache_dir=tmp_path, subdir="Pilot1")
    assert path == tmp_path / "Pilot1" / "table.csv"
    assert path.read_bytes() == PLAIN
    assert server.requests == ["/data/table.csv"]
    again = fetch_file(url, cache_dir=tmp_path, subdir="Pilot1")
    assert again == path
    assert server.requests == ["/data/table.csv"]  # no second request
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]  # no temporary files left


def test_md5_match(server: Server, tmp_path: Path) -> None:
    digest = hashlib.md5(PLAIN).hexdigest()
    path = fetch_file(server.url("/data/table.csv"), md5=digest.upper(), cache_dir=tmp_path)
    assert md5sum(path) == digest
    fetch_file(server.url("/data/table.csv"), md5=digest, cache_dir=tmp_path)
    assert len(server.requests) == 1


def test_md5_mismatch_names_url_expected_and_got_and_removes_the_file(server: Server, tmp_path: Path) -> None:
    url = server.url("/data/table.csv")
    wrong = "0" * 32
    with pytest.raises(CandleLabError) as info:
        fetch_file(url, md5=wrong, cache_dir=tmp_path)
    message = str(info.value)
    assert url in message
    assert f"expected {wrong}" in message
    assert f"got {hashlib.md5(PLAIN).hexdigest()}" in message
    assert not (tmp_path / "table.csv").exists()
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cached_file_is_fetched_again(server: Server, tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_bytes(b"truncated")
    path = fetch_file(server.url("/data/table.csv"), md5=hashlib.md5(PLAIN).hexdigest(), cache_dir=tmp_path)
    assert path.read_bytes() == PLAIN
    assert len(server.requests) == 1


def test_untar(server: Server, tmp_path: Path) -> None:
    url = server.url("/data/P3B1_data.tgz")
    folder = fetch_file(url, md5=hashlib.md5(ARCHIVE).hexdigest(), untar=True, cache_dir=tmp_path, subdir="P3B1")
    assert folder == tmp_path / "P3B1" / "P3B1_data"
    assert folder.is_dir()
    assert (folder / "P3B1_data" / "train.csv").read_bytes() == b"a,b\n1,2\n"
    assert (tmp_path / "P3B1" / "P3B1_data.tgz").read_bytes() == ARCHIVE
    assert fetch_file(url, untar=True, cache_dir=tmp_path, subdir="P3B1") == folder
    assert len(server.requests) == 1


def test_untar_refuses_path_traversal(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(CandleLabError, match=r"refusing to unpack evil\.tar\.gz.*'\.\./escape\.txt'"):
        fetch_file(server.url("/data/evil.tar.gz"), untar=True, cache_dir=cache)
    assert not (tmp_path / "escape.txt").exists()
    assert not (cache / "escape.txt").exists()
    assert not (cache / "evil").exists()


def test_untar_refuses_links_outside_the_folder(server: Server, tmp_path: Path) -> None:
    with pytest.raises(CandleLabError, match=r"link 'data/passwd' -> '/etc/passwd' points outside"):
        fetch_file(server.url("/data/link.tar"), untar=True, cache_dir=tmp_path)
    assert not (tmp_path / "link").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["link.tar"]  # the archive stays; nothing unpacked


def test_untar_needs_a_tar_name(server: Server, tmp_path: Path) -> None:
    with pytest.raises(CandleLabError, match="not a tar archive"):
        fetch_file(server.url("/data/table.csv"), untar=True, cache_dir=tmp_path)
    assert server.requests == []


def test_404_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    url = server.url("/data/missing.tgz")
    with pytest.raises(CandleLabError, match=r"cannot download .*/data/missing\.tgz: HTTP 404") as info:
        fetch_file(url, cache_dir=tmp_path)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no partial file


def test_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    srv = Server()
    url = srv.url("/data/table.csv")
    srv.close()  # nothing listens on that port any more
    with pytest.raises(CandleLabError, match="cannot download"):
        fetch_file(url, cache_dir=tmp_path)


def test_subdir_must_stay_inside_the_cache(tmp_path: Path) -> None:
    with pytest.raises(CandleLabError, match="subdir"):
        fetch_file("http://127.0.0.1:9/x.csv", cache_dir=tmp_path, subdir="../outside")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CANDLE_LAB_DATA", str(tmp_path / "data"))
    assert default_cache_dir() == tmp_path / "data"
    monkeypatch.delenv("CANDLE_LAB_DATA")
    assert default_cache_dir() == Path.home() / ".cache" / "candle_lab" / "data"
