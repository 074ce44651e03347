"""Fetch a model's data files once and keep them in a local cache (CANDLE's ``get_file``).

``fetch_file(url)`` downloads to ``<cache>/<subdir>/<file name>`` unless the file is
already there, checks its MD5 sum when one is given, and unpacks tar archives. The cache
folder is ``$CANDLE_LAB_DATA`` when set, else ``~/.cache/candle_lab/data``. Downloads go
to a temporary file in the same folder and are renamed into place only when complete and
verified, so an interrupted or concurrent download never leaves a partial file behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from candle_lab import settings
from candle_lab.errors import CandleLabError

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
CHUNK = 1 << 20
TIMEOUT_S = 60.0


def default_cache_dir() -> Path:
    """``$CANDLE_LAB_DATA``, else ``~/.cache/candle_lab/data``."""
    return settings.data_dir() or Path.home() / ".cache" / "candle_lab" / "data"


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in (".", ".."):
        raise CandleLabError(f"fetch_file: cannot tell a file name from the URL {url!r} (it must end in one)")
    return name


def _archive_stem(name: str) -> str:
    lower = name.lower()
    for suffix in TAR_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    raise CandleLabError(
        f"fetch_file: untar=True but {name!r} is not a tar archive (expected one of {', '.join(TAR_SUFFIXES)})"
    )


def _check_md5(path: Path, md5: str, url: str) -> None:
    got = md5sum(path)
    if got.lower() != md5.strip().lower():
        path.unlink(missing_ok=True)
        raise CandleLabError(
            f"fetch_file: MD5 mismatch for {url}: expected {md5.strip().lower()}, got {got}; "
            f"the downloaded file was removed"
        )


def _download(url: str, target: Path) -> None:
    """``url`` -> ``target`` through a temporary file in the same folder, renamed atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    log.info("downloading %s to %s", url, target)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, CHUNK)
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        raise CandleLabError(f"fetch_file: cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise CandleLabError(f"fetch_file: cannot download {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise CandleLabError(f"fetch_file: cannot download {url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _safe_members(archive: tarfile.TarFile, root: Path, name: str, dest: Path) -> list[tarfile.TarInfo]:
    """Every member, after checking that none would land outside ``root`` (path traversal)."""
    root = root.resolve()
    members = archive.getmembers()
    for member in members:
        target = (root / member.name).resolve()
        if target != root and root not in target.parents:
            raise CandleLabError(f"fetch_file: refusing to unpack {name}: member {member.name!r} points outside {dest}")
        if member.issym() or member.islnk():
            link = Path(member.linkname)
            base = target.parent if member.issym() else root
            resolved = (base / link).resolve()
            if link.is_absolute() or (resolved != root and root not in resolved.parents):
                raise CandleLabError(
                    f"fetch_file: refusing to unpack {name}: link {member.name!r} -> {member.linkname!r} "
                    f"points outside {dest}"
                )
        elif not (member.isfile() or member.isdir()):
            raise CandleLabError(
                f"fetch_file: refusing to unpack {name}: member {member.name!r} is not a file, folder or link"
            )
    return members


def _untar(archive_path: Path, dest: Path) -> None:
    """Unpack into a temporary folder next to ``dest``, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    log.info("unpacking %s to %s", archive_path, dest)
    try:
        try:
            with tarfile.open(archive_path) as archive:
                members = _safe_members(archive, tmp, archive_path.name, dest)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    archive.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError) as exc:
            raise CandleLabError(f"fetch_file: {archive_path} is not a readable tar archive: {exc}") from None
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process may have unpacked it meanwhile
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def fetch_file(
    url: str,
    md5: str | None = None,
    untar: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    subdir: str | None = None,
) -> Path:
    """The local path of ``url``'s file, downloading it into the cache the first time.

    ``md5``: expected hex digest, checked after a download and on a cache hit (a cached file
    that does not match is fetched again). ``untar``: unpack a ``.tar.gz``/``.tgz``/``.tar``
    archive into a folder named after it (without the suffix) and return that folder.
    ``subdir``: a folder inside the cache (e.g. the benchmark's name). Raises
    :class:`CandleLabError` when the download fails or the MD5 sum does not match.
    """
    name = _file_name(url)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if subdir:
        sub = Path(subdir)
        if sub.is_absolute() or ".." in sub.parts:
            raise CandleLabError(f"fetch_file: subdir must be a relative folder inside the cache, got {subdir!r}")
        folder = folder / sub
    path = folder / name
    stem = _archive_stem(name) if untar else None

    if path.is_file() and md5 and md5sum(path).lower() != md5.strip().lower():
        log.warning("cached %s does not match its MD5 sum; fetching it again", path)
        path.unlink()
    downloaded = not path.is_file()
    if downloaded:
        _download(url, path)
        if md5:
            _check_md5(path, md5, url)
    else:
        log.debug("cache hit: %s", path)
    if stem is None:
        return path
    dest = folder / stem
    if downloaded and dest.is_dir():  # unpacked from an older copy of the archive
        shutil.rmtree(dest)
    if not dest.is_dir():
        _untar(path, dest)
    return dest


__all__ = ["default_cache_dir", "fetch_file", "md5sum"]
