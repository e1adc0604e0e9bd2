"""Download an archive from an ``http(s)://`` URL, in chunks, to a local file.

The file is written as ``<name>.part`` and renamed once complete, so an
interrupted download never looks like an archive. Which URL prefixes are
accepted, whether redirects are followed, and the timeout come from the
settings (:mod:`diskette.conf`); redirects are refused by default, so an
archive is only ever fetched from the address given.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .archive.format import CHUNK_SIZE
from .exceptions import DownloadError
from .reporting import Reporter

DEFAULT_NAME = "diskette_downloaded_archive.tar.gz"


def is_url(source: str) -> bool:
    """Whether ``source`` looks like a URL rather than a local path."""
    return "://" in source


def download_target(url: str, destination: Path | None) -> Path:
    """Where to save ``url``: ``destination`` itself, or a file in that folder.

    The file name is the URL's last path segment, or a default name.
    """
    name = Path(unquote(urlsplit(url).path)).name or DEFAULT_NAME
    if destination is None:
        return Path.cwd() / name
    return destination / name if destination.is_dir() else destination


def download(
    url: str,
    target: Path,
    *,
    allowed_protocols: tuple[str, ...],
    allow_redirect: bool,
    timeout: float,
    reporter: Reporter | None = None,
) -> Path:
    """Fetch ``url`` into ``target``.

    :raises DownloadError: for a URL whose protocol is not allowed, a
        ``target`` that already exists, a refused redirect, an HTTP error, a
        timeout or a network failure, naming the URL.
    """
    reporter = reporter or Reporter()
    if not url.startswith(tuple(allowed_protocols)):
        allowed = ", ".join(allowed_protocols) or "none"
        raise DownloadError(
            f"'{url}' does not use an allowed protocol ({allowed}; "
            "see DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS)"
        )
    if target.exists():  # it is removed once loaded: never take a file over
        raise DownloadError(
            f"'{target}' already exists; move it or choose --download-destination"
        )
    handlers = [] if allow_redirect else [_RefuseRedirects()]
    opener = urllib.request.build_opener(*handlers)
    partial = target.with_name(target.name + ".part")
    reporter.info(f"Downloading archive from '{url}' to '{target}'")
    try:
        with opener.open(url, timeout=timeout) as response, open(partial, "wb") as output:
            advance = reporter.progress(int(response.headers.get("Content-Length") or 0))
            while block := response.read(CHUNK_SIZE):
                output.write(block)
                advance(len(block))
        os.replace(partial, target)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"downloading '{url}' failed: HTTP {exc.code} {exc.reason}"
        ) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"downloading '{url}' failed: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise DownloadError(f"downloading '{url}' failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        raise urllib.error.HTTPError(
            req.full_url,
            code,
            f"redirect to '{newurl}' refused (see DISKETTE_DOWNLOAD_ALLOW_REDIRECT)",
            headers,
            fp,
        )
