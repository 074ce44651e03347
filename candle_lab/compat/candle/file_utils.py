"""CANDLE's file functions: ``get_file`` (download once into a cache, check the md5,
unpack archives), ``validate_file``, ``directory_from_parameters``.

The cache is ``datadir`` when given, else ``$CANDLE_DATA_DIR/<cache_subdir>``, else
``~/.cache/candle_lab/candle_data/<cache_subdir>`` (``$XDG_CACHE_HOME`` respected).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from candle_lab.errors import CandleLabError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 60.0  # seconds without data before a download fails
_ARCHIVES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


def cache_dir(cache_subdir: str = "common") -> Path:
    """The folder ``get_file`` keeps ``cache_subdir``'s files in (when no ``datadir``)."""
    root = os.environ.get("CANDLE_DATA_DIR")
    if root:
        return Path(root) / cache_subdir
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "candle_lab" / "candle_data" / cache_subdir


def get_file(  # noqa: PLR0917  # CANDLE's signature
    fname: str,
    origin: str,
    untar: bool = False,
    md5_hash: str | None = None,
    cache_subdir: str = "common",
    datadir: str | os.PathLike[str] | None = None,
    unpack: bool | None = None,
) -> str:
    """Download ``origin`` as ``fname`` into the cache unless it is there already; returns
    the local path (of the unpacked folder for an archive).

    With ``md5_hash``, a cached file with another md5 is downloaded again, and a download
    with another md5 is an error (the file is not kept). Archives (``.tar.gz``, ``.tgz``,
    ``.tar``, ``.zip``; or ``untar``/``unpack``) are unpacked into the cache folder, and
    the path returned is the cache folder joined with ``fname`` without its extension."""
    folder = Path(datadir) if datadir is not None else cache_dir(cache_subdir)
    fpath = folder / fname
    fpath.parent.mkdir(parents=True, exist_ok=True)
    unpacked = next((folder / fname[: -len(s)] for s in _ARCHIVES if fname.endswith(s)), None)
    if (untar or unpack) and unpacked is None:
        raise CandleLabError(f"get_file: cannot unpack {fname!r}: expected a name ending in {', '.join(_ARCHIVES)}")

    if fpath.exists():
        download = md5_hash is not None and not validate_file(fpath, md5_hash)
        if download:
            log.warning("%s was found, but its md5 is not %s: downloading it again", fpath, md5_hash)
    else:
        download = unpacked is None or not unpacked.exists()
    if download:
        _download(origin, fpath, md5_hash)
    if unpacked is None:
        return str(fpath)
    if download and unpacked.exists():
        _remove(unpacked)  # unpacked from an outdated archive
    if not unpacked.exists():
        _unpack(fpath, folder)
        if not unpacked.exists():
            log.warning("unpacking %s did not create %s", fpath, unpacked)
    return str(unpacked)


def validate_file(fpath: str | os.PathLike[str], md5_hash: str) -> bool:
    """Whether the file's md5 is ``md5_hash``."""
    return _md5(Path(fpath)) == str(md5_hash).lower()


def directory_from_parameters(params: Mapping[str, Any], commonroot: str = "Output") -> str:
    """CANDLE's output folder: ``commonroot/<experiment_id>/<run_id>`` (created), or the
    current folder when ``commonroot`` is ``.``; returned as an absolute path."""
    if str(commonroot) in (".", "./"):
        return os.path.abspath(".")
    outdir = os.path.abspath(os.path.join(str(commonroot), str(params["experiment_id"]), str(params["run_id"])))
    os.makedirs(outdir, exist_ok=True)
    return outdir


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(origin: str, fpath: Path, md5_hash: str | None) -> None:
    log.info("Downloading data from %s", origin)
    part = fpath.with_name(f".{fpath.name}.{os.getpid()}-{threading.get_ident()}.part")
    try:
        with urllib.request.urlopen(origin, timeout=DOWNLOAD_TIMEOUT) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise CandleLabError(f"get_file: could not download {origin}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        part.unlink(missing_ok=True)
        raise CandleLabError(f"get_file: could not download {origin}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise CandleLabError(f"get_file: could not download {origin} to {fpath}: {exc}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if md5_hash is not None:
        actual = _md5(part)
        if actual != str(md5_hash).lower():
            part.unlink(missing_ok=True)
            raise CandleLabError(
                f"get_file: md5 mismatch for {origin}: expected {md5_hash} (md5_hash), got {actual}; "
                "the download was not kept"
            )
    os.replace(part, fpath)


def _unpack(archive: Path, folder: Path) -> None:
    """Unpack into a private folder first, then move its entries into ``folder``."""
    log.info("Unpacking %s", archive)
    scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(scratch)
        else:
            with tarfile.open(archive) as tf:
                _extract_tar(tf, scratch)
        for entry in scratch.iterdir():
            dest = folder / entry.name
            if dest.exists():
                log.debug("%s exists already; kept", dest)
                continue
            os.replace(entry, dest)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise CandleLabError(f"get_file: could not unpack {archive}: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract_tar(tf: tarfile.TarFile, dest: Path) -> None:
    """Extract, refusing members that would land outside ``dest`` (links, absolute paths)."""
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4, 3.10.12
        tf.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tf.getmembers():
        target = (dest / member.name).resolve()
        if member.issym() or member.islnk() or not target.is_relative_to(root):
            raise tarfile.TarError(f"unsafe member {member.name!r}")
    tf.extractall(dest)  # members checked above


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
