"""Download an archive from an ``http(s)://`` URL, in chunks, to a local file.

An archive at its final name is always a whole one: the bytes go to a
private temporary file beside the target (``.<name>.<random>.part``, mode
0600, since an archive holds production data), which is linked to the final
name only once as many bytes as the server announced (and, when given, the
expected sha256) have arrived. Any failure, ``Ctrl-C`` included, removes the
temporary file, so running the same command again simply starts over; a
file already at the final name is never replaced.

A server that offers ranges (diskette's own endpoints, :mod:`diskette.views`)
is asked for the rest of a body cut short, and the sha256 it states is
checked; an API key is sent to it as a bearer token, but only where no one
on the way can read it (``https://``, or loopback).

Which URL prefixes are accepted, whether redirects are followed, and the
timeout come from the settings (:mod:`diskette.conf`). Redirects are refused
by default, so an archive is only ever fetched from the address given; when
allowed, each one must still lead to an allowed prefix (``ftp://`` or
``file://`` never slip in behind an ``https://`` URL).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from .archive.writer import remove_leftovers
from .encryption import SUFFIX, decrypt, read_identities
from .exceptions import DownloadError, RegistryError
from .files import BLOCK_SIZE, PartialFile, room_problem
from .progress import human_size
from .reporting import Reporter

DEFAULT_NAME = "diskette_downloaded_archive.tar.gz"
#: How many times a cut download is tried in all, and the longest wait between two.
ATTEMPTS = 5
LONGEST_WAIT = 5.0
#: A body of no announced size stops when the disk has less than this free,
#: looked at every :data:`UNSIZED_CHECK` bytes.
UNSIZED_RESERVE = 1024**3
UNSIZED_CHECK = 64 * 1024**2


def is_url(source: str) -> bool:
    """Whether ``source`` looks like a URL rather than a local path."""
    return "://" in source


def download_target(url: str, destination: Path | None) -> Path:
    """Where to save ``url``: ``destination`` itself, or a file in that folder.

    The file name is the URL's last path segment if it names an archive,
    else a default name.
    """
    name = Path(unquote(urlsplit(url).path)).name
    if not name.endswith(".tar.gz"):  # e.g. .../snapshots/latest/
        name = DEFAULT_NAME
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
    api_key: str | None = None,
    identity: Path | None = None,
    attempts: int = ATTEMPTS,
) -> Path:
    """Fetch ``url`` into ``target``, which must not exist yet.

    A server that offers ranges (``Accept-Ranges: bytes`` and a strong
    ``ETag``, as diskette's endpoints do) is asked for the rest when the
    connection breaks, until ``attempts`` tries in a row bring nothing, with
    ``If-Range`` so that a snapshot replaced meanwhile is fetched again from
    its start. The ``sha256`` the server states (``Repr-Digest``) is checked
    like one given here.

    :param sha256: when known, the file's expected sha256; a download whose
        bytes differ is refused like a truncated one.
    :param api_key: sent as ``Authorization: Bearer`` to a server that asks
        for it (:meth:`_Fetch.open`): only over ``https://`` or to a loopback
        address, and never on a redirect.
    :param identity: the age key file that decrypts a snapshot the server
        says is encrypted (``X-Diskette-Encryption: age``).
    :raises DownloadError: for a URL whose protocol is not allowed, a
        ``target`` that already exists, a refused redirect, an HTTP error
        (with the server's one-line reason), a body shorter or longer than
        its ``Content-Length`` that cannot be resumed, an invalid
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
    handlers: list[Any] = [
        _CheckRedirects(allowed_protocols) if allow_redirect else _RefuseRedirects()
    ]
    if api_key is not None and urlsplit(url).scheme == "http":
        # Loopback in clear: an http_proxy of the environment would carry the
        # key, readable, to another machine.
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    fetch = _Fetch(url, opener, timeout, api_key, identity)
    reporter.info(f"Downloading archive from '{url}' to '{target}'")
    sealed = target.with_name(target.name + SUFFIX)
    try:
        # Locked, so that a later download to the same name tells this file,
        # at work, from one a killed download left behind, which it removes.
        with PartialFile(target, lock=True) as output:
            for leftover in remove_leftovers(target, keep=output.path):
                reporter.info(f"Removed '{leftover}', left by an interrupted download")
            fetch.into(output, reporter, attempts)
            expected = sha256 or fetch.sha256
            if expected is not None and output.sha256 != expected.lower():
                raise DownloadError(
                    f"downloading '{url}' failed: its sha256 is {output.sha256}, "
                    f"not {expected}; nothing was kept"
                )
            if fetch.encrypted:  # the ciphertext, decrypted once whole
                output.target = sealed
            try:  # never over a file that appeared meanwhile: it would be removed
                output.commit(replace=False)
            except FileExistsError as exc:
                raise _exists(output.target) from exc
    except urllib.error.HTTPError as exc:
        asked = exc.code == 401 and api_key is None and _challenges(exc)
        hint = " (set DISKETTE_API_KEY to your key)" * asked
        raise DownloadError(
            f"downloading '{url}' failed: HTTP {exc.code} {_reason(exc)}{hint}"
        ) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _timed_out(url, timeout) from exc
        raise DownloadError(f"downloading '{url}' failed: {exc.reason}") from exc
    except http.client.HTTPException as exc:  # e.g. a chunked body cut short
        raise DownloadError(
            f"downloading '{url}' failed: the server's answer broke off ({exc!r})"
        ) from exc
    except TimeoutError as exc:
        raise _timed_out(url, timeout) from exc
    except OSError as exc:
        raise DownloadError(f"downloading '{url}' failed: {exc}") from exc
    if fetch.encrypted:
        _decrypt(url, sealed, target, identity, fetch.archive_sha256, reporter)
    return target


def _timed_out(url: str, timeout: float) -> DownloadError:
    return DownloadError(
        f"downloading '{url}' failed: the server did not answer for {timeout:g} s "
        "(DISKETTE_DOWNLOAD_TIMEOUT); try again, or raise it"
    )


def _challenges(exc: urllib.error.HTTPError) -> bool:
    """Whether a 401 is diskette's endpoints asking for a key."""
    challenge = (exc.headers.get("WWW-Authenticate") or "") if exc.headers else ""
    return challenge.lower().startswith("bearer") and 'realm="diskette"' in challenge


class _Fetch:
    """One URL fetched into one file, in as many requests as the cuts make.

    After the first answer, the rest is asked of the ``Content-Location``
    the server gave (the snapshot itself, not "the latest"), if it is on
    the same server.
    """

    def __init__(
        self,
        url: str,
        opener: Any,
        timeout: float,
        api_key: str | None,
        identity: Path | None,
    ) -> None:
        self.url = self.resume_url = url
        self.opener = opener
        self.timeout = timeout
        self.api_key = api_key
        #: Whether the server asked for the key (:meth:`open`).
        self.send_key = False
        self.identity = identity
        self.etag: str | None = None
        self.total: int | None = None
        self.sha256: str | None = None
        self.archive_sha256: str | None = None
        self.encrypted = False
        self.resumable = False

    def open(self, offset: int) -> Any:
        """The answer to a request from byte ``offset``.

        The key goes only where it is asked for: to a server that answers
        without it ``401`` with ``WWW-Authenticate: Bearer realm="diskette"``
        (diskette's endpoints), never to the other hosts an archive may be
        fetched from (a bucket, a file server) while ``DISKETTE_API_KEY``
        is set; and, asked for, only over https or to this machine.
        """
        try:
            return self.opener.open(self.request(offset), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if (
                exc.code != 401
                or self.api_key is None
                or self.send_key
                or not _challenges(exc)
            ):
                raise
            if not _may_carry_key(self.url):
                raise DownloadError(
                    f"'{self.url}' asks for an API key over plain http to another host "
                    "than this one: a key is only sent over https://; use the https:// "
                    "address"
                ) from None
            self.send_key = True
            return self.opener.open(self.request(offset), timeout=self.timeout)

    def into(self, output: PartialFile, reporter: Reporter, attempts: int) -> None:
        """Write the whole body into ``output``, resuming cut connections.

        An attempt that brought bytes does not count against ``attempts``:
        a long pull over a flaky line goes on as long as it moves.
        """
        failed = 0
        while True:
            before = output.size
            try:
                with self.open(output.size) as response:
                    self.take(response, output, reporter)
                    while block := response.read(BLOCK_SIZE):
                        output.write(block)
                        self.check_growth(output)
                if self.total is None or output.size == self.total:
                    return
                cut: Exception = DownloadError(
                    f"downloading '{self.url}' failed: received {output.size} of the "
                    f"{self.total} bytes announced (the connection ended early); "
                    "nothing was kept, run the command again"
                )
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                cut = exc
            failed = 0 if output.size > before else failed + 1
            if not self.resumable or failed >= attempts:
                raise cut
            # At once after progress (a cut is rarely a server in trouble),
            # then waiting longer each time nothing comes.
            wait = min(LONGEST_WAIT, 0.25 * 2**failed) if failed else 0
            reporter.info(
                f"The connection broke after {output.size} of {self.total} bytes: "
                f"resuming{f' in {wait:g} s' * bool(wait)}"
            )
            time.sleep(wait)

    def check_growth(self, output: PartialFile) -> None:
        """Stop a body that goes past what was announced, or, announced by
        nobody, past what the disk can spare: a server never fills it."""
        if self.total is not None and output.size > self.total:
            raise DownloadError(
                f"downloading '{self.url}' failed: received more than the "
                f"{self.total} bytes announced; nothing was kept"
            )
        if self.total is None and output.size % UNSIZED_CHECK < BLOCK_SIZE:
            problem = room_problem(output.path.parent, UNSIZED_RESERVE, "this machine")
            if problem:
                raise DownloadError(
                    f"downloading '{self.url}' failed: the server announced no size and "
                    f"has sent {human_size(output.size)} so far; {problem}"
                )

    def request(self, offset: int) -> urllib.request.Request:
        request = urllib.request.Request(self.resume_url if offset else self.url)
        if self.api_key is not None and self.send_key:
            # Unredirected: urllib copies other headers to wherever a redirect leads.
            request.add_unredirected_header("Authorization", f"Bearer {self.api_key}")
        if offset and self.etag:
            request.add_header("Range", f"bytes={offset}-")
            request.add_header("If-Range", self.etag)
        return request

    def take(self, response: Any, output: PartialFile, reporter: Reporter) -> None:
        """Read an answer's headers: where the body starts, and what it is."""
        length = _content_length(response, self.url)
        if response.status == 206:
            start, end, total = _content_range(response.headers.get("Content-Range"))
            if not output.size:
                raise DownloadError(
                    f"downloading '{self.url}' failed: the server sent a part (206) when "
                    "the whole file was asked for; fix the server"
                )
            if (
                start != output.size
                or total != self.total
                or end != (total or 0) - 1
                or (length is not None and length != (end or 0) - start + 1)
            ):
                raise DownloadError(
                    f"downloading '{self.url}' failed: the server resumed with bytes "
                    f"{start}-{end} of {total}, not from {output.size} to the end of "
                    f"{self.total}; run the command again"
                )
            return
        if output.size:  # a 200: the whole body again (the snapshot changed)
            reporter.info("The server sent the file again from its start")
            output.restart()
        self.encrypted = response.headers.get("X-Diskette-Encryption") == "age"
        if self.encrypted:  # a missing key is told before a long download
            if self.identity is None:
                raise DownloadError(
                    f"'{self.url}' is encrypted (age): set DISKETTE_REGISTRY_IDENTITY "
                    "to your key file"
                )
            try:
                read_identities(self.identity)
            except RegistryError as exc:
                raise DownloadError(str(exc)) from exc
        if length is not None:  # and as much again for an archive to decrypt
            problem = room_problem(
                output.path.parent, length * (1 + self.encrypted), f"'{self.url}'"
            )
            if problem:
                raise DownloadError(problem)
        self.total = length
        self.etag = _strong(response.headers.get("ETag"))
        self.resumable = bool(
            self.etag
            and length is not None
            and "bytes" in response.headers.get("Accept-Ranges", "")
        )
        self.sha256 = _repr_digest(response.headers.get("Repr-Digest"), self.url)
        self.archive_sha256 = response.headers.get("X-Diskette-Archive-Sha256")
        location = response.headers.get("Content-Location")
        if location:
            candidate = urljoin(response.geturl(), location)
            if _origin(candidate) == _origin(self.url):
                self.resume_url = candidate
        output.progress = reporter.progress(
            length or 0, f"Downloading {output.target.name}"
        )


def _decrypt(
    url: str,
    sealed: Path,
    target: Path,
    identity: Path | None,
    archive_sha256: str | None,
    reporter: Reporter,
) -> None:
    """Decrypt a downloaded snapshot, and check it is the archive announced."""
    try:
        if identity is None:
            raise DownloadError(
                f"'{url}' is encrypted (age): set DISKETTE_REGISTRY_IDENTITY to your key file"
            )
        reporter.info(f"Decrypting with '{identity}'")
        try:
            digest = decrypt(sealed, target, identity, f"the snapshot of '{url}'")
        except RegistryError as exc:
            raise DownloadError(str(exc)) from exc
        if archive_sha256 and digest != archive_sha256.lower():
            target.unlink(missing_ok=True)
            raise DownloadError(
                f"the snapshot of '{url}' decrypts to another archive than the server "
                "announced: nothing was loaded"
            )
    finally:
        sealed.unlink(missing_ok=True)


def _may_carry_key(url: str) -> bool:
    """Whether a key may travel to ``url``: encrypted, or never leaving the machine."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _strong(etag: str | None) -> str | None:
    """An entity tag ``If-Range`` may use: a strong one (not ``W/"..."``)."""
    etag = (etag or "").strip()
    return etag if etag.startswith('"') and etag.endswith('"') and len(etag) > 2 else None


def _repr_digest(header: str | None, url: str) -> str | None:
    """The hex sha256 of an RFC 9530 ``Repr-Digest: sha-256=:<base64>:``."""
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        try:
            raw = base64.b64decode(value.strip().strip(":"), validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise DownloadError(
                f"downloading '{url}' failed: the server's Repr-Digest is not a "
                "sha-256; fix the server"
            )
        return raw.hex()
    return None


def _content_range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """Start, end and total of ``Content-Range: bytes START-END/TOTAL``."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", (header or "").strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else (None, None, None)


def _reason(exc: urllib.error.HTTPError) -> str:
    """The HTTP reason, and the one line a diskette endpoint gave as JSON,
    printable and short: a server's words never drive the terminal."""
    reason = _printable(str(exc.reason), 300)
    with contextlib.suppress(Exception):
        answer = json.loads(exc.read(4096))
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            return f"{reason}: {_printable(answer['error'], 300)}"
    return reason


def _printable(text: str, most: int) -> str:
    """``text`` on one line, without control characters, at most ``most`` long."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


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
    if response.headers.get("Transfer-Encoding"):
        # http.client then ignores the length: a body could go on forever.
        raise DownloadError(
            f"downloading '{url}' failed: the server sent both Content-Length and "
            "Transfer-Encoding; fix the server or use another URL"
        )
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
            f"redirect to '{newurl}' refused: use that URL (or see "
            "DISKETTE_DOWNLOAD_ALLOW_REDIRECT)",
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
