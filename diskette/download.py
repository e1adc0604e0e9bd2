"""Download an archive from an ``http(s)://`` URL, in chunks, to a local file.

An archive at its final name is always a whole one: the bytes go to a
private temporary file beside the target (``.<name>.<random>.part``, mode
0600, since an archive holds production data), which is linked to the final
name only once as many bytes as the server announced (and, when given, the
expected sha256) have arrived. Any failure, ``Ctrl-C`` included, removes the
temporary file, so running the same command again simply starts over; a
file already at the final name is never replaced.

Which URL prefixes are accepted, whether redirects are followed, and the
timeout come from the settings (:mod:`diskette.conf`). Redirects are refused
by default, so an archive is only ever fetched from the address given; when
allowed, each one must still lead to an allowed prefix (``ftp://`` or
``file://`` never slip in behind an ``https://`` URL).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .exceptions import DownloadError
from .files import BLOCK_SIZE, PartialFile
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
    sha256: str | None = None,
) -> Path:
    """Fetch ``url`` into ``target``, which must not exist yet.

    :param sha256: when known, the file's expected sha256; a download whose
        bytes differ is refused like a truncated one.
    :raises DownloadError: for a URL whose protocol is not allowed, a
        ``target`` that already exists, a refused redirect, an HTTP error, a
        body shorter or longer than its ``Content-Length``, an invalid
        ``Content-Length``, a sha256 mismatch, a timeout or a network
        failure, naming the URL. Nothing is left behind then.
    """
    reporter = reporter or Reporter()
    if not url.startswith(tuple(allowed_protocols)):
        raise DownloadError(
            f"'{url}' does not use an allowed protocol ({_allowed(allowed_protocols)}; "
            "see DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS)"
        )
    if target.exists():  # it is removed once loaded: never take a file over
        raise _exists(target)
    redirects = _CheckRedirects(allowed_protocols) if allow_redirect else _RefuseRedirects()
    opener = urllib.request.build_opener(redirects)
    reporter.info(f"Downloading archive from '{url}' to '{target}'")
    try:
        with (
            opener.open(url, timeout=timeout) as response,
            PartialFile(target) as output,
        ):
            expected = _content_length(response, url)
            output.progress = reporter.progress(expected or 0, f"Downloading {target.name}")
            while block := response.read(BLOCK_SIZE):
                output.write(block)
            received, digest = output.size, output.sha256
            if expected is not None and received != expected:
                raise DownloadError(
                    f"downloading '{url}' failed: received {received} of the "
                    f"{expected} bytes announced (the connection ended early); "
                    "nothing was kept, run the command again"
                )
            if sha256 is not None and digest != sha256.lower():
                raise DownloadError(
                    f"downloading '{url}' failed: its sha256 is {digest}, "
                    f"not {sha256}; nothing was kept"
                )
            try:  # never over a file that appeared meanwhile: it would be removed
                output.commit(replace=False)
            except FileExistsError as exc:
                raise _exists(target) from exc
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"downloading '{url}' failed: HTTP {exc.code} {exc.reason}"
        ) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"downloading '{url}' failed: {exc.reason}") from exc
    except http.client.HTTPException as exc:  # e.g. a chunked body cut short
        raise DownloadError(
            f"downloading '{url}' failed: the server's answer broke off ({exc!r})"
        ) from exc
    except (TimeoutError, OSError) as exc:
        raise DownloadError(f"downloading '{url}' failed: {exc}") from exc
    return target


def _exists(target: Path) -> DownloadError:
    return DownloadError(
        f"'{target}' already exists; move it or choose --download-destination"
    )


def _content_length(response: Any, url: str) -> int | None:
    """The announced body size, or ``None`` when the server gave none.

    ``http.client`` silently ignores a malformed value and then reads until
    the connection closes, so a cut body would pass for a whole one: a
    value that is not one non-negative integer is refused instead.
    """
    values = response.headers.get_all("Content-Length") or []
    if not values:
        return None
    if len(set(values)) > 1:
        raise DownloadError(
            f"downloading '{url}' failed: the server sent several Content-Length "
            f"headers ({', '.join(values)}); fix the server or use another URL"
        )
    value = values[0].strip()
    if not value.isdigit() or not value.isascii():
        raise DownloadError(
            f"downloading '{url}' failed: invalid Content-Length {value!r} "
            "(not a byte count); fix the server or use another URL"
        )
    return int(value)


def _allowed(protocols: tuple[str, ...]) -> str:
    return ", ".join(protocols) or "none"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Every redirect is an error: the archive comes from the address given."""

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


class _CheckRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but only to allowed prefixes.

    urllib itself follows a redirect to ``ftp://``; the allowed protocols
    must hold for every hop, not only for the first URL. The number of hops
    is capped at urllib's default (10), counted here, before urllib's own
    loop check, whose message spans several lines.
    """

    max_repeats = urllib.request.HTTPRedirectHandler.max_redirections

    def __init__(self, allowed_protocols: tuple[str, ...]) -> None:
        super().__init__()
        self.allowed_protocols = tuple(allowed_protocols)

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        refusal = None
        if not newurl.startswith(self.allowed_protocols):
            refusal = (
                f"not an allowed protocol ({_allowed(self.allowed_protocols)}; "
                "see DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS)"
            )
        elif sum(getattr(req, "redirect_dict", {}).values()) >= self.max_redirections:
            refusal = f"more than {self.max_redirections} redirects in a row"
        if refusal:
            raise urllib.error.HTTPError(
                req.full_url,
                code,
                f"redirect to '{newurl}' refused: {refusal}",
                headers,
                fp,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)
