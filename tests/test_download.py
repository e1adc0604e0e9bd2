"""URL downloads against a real HTTP server on 127.0.0.1, misbehaving on purpose.

Each route of the server is a small function writing a raw response, so a
test can announce more bytes than it sends, send a header no server should,
or redirect anywhere. The downloads go through :func:`diskette.download.download`
itself, with the settings' defaults.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from diskette.conf import DEFAULT_DOWNLOAD_PROTOCOLS
from diskette.download import _may_carry_key, download
from diskette.exceptions import DownloadError
from diskette.reporting import Reporter
from tests.conftest import tmpfs

BODY = os.urandom(300 * 1024)

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class Server:
    """A threaded ``http.server`` whose answers the test decides, per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests = 0
        routes = self.routes
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                server.requests += 1
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def whole(body: bytes = BODY) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def cut(sent: int) -> Route:
    """Announce all of ``BODY``, send ``sent`` bytes, close: a dropped connection."""

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        handler.wfile.write(BODY[:sent])

    return route


def header(name: str, value: str) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(BODY)

    return route


def redirect(location: str) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def fetch(
    url: str,
    target: Path,
    *,
    allowed_protocols: tuple[str, ...] = DEFAULT_DOWNLOAD_PROTOCOLS,
    allow_redirect: bool = False,
    reporter: Reporter | None = None,
    sha256: str | None = None,
    api_key: str | None = None,
    timeout: float = 5,
) -> Path:
    """:func:`download` with the settings' defaults."""
    return download(
        url,
        target,
        allowed_protocols=allowed_protocols,
        allow_redirect=allow_redirect,
        timeout=timeout,
        reporter=reporter,
        sha256=sha256,
        api_key=api_key,
    )


def one_line(exc: pytest.ExceptionInfo[DownloadError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_whole_download_is_private_and_alone(server, tmp_path):
    server.routes["/a.tar.gz"] = whole()
    target = tmp_path / "a.tar.gz"

    assert fetch(f"{server.url}/a.tar.gz", target) == target

    assert target.read_bytes() == BODY
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # production data
    assert target.stat().st_nlink == 1  # the temporary link is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_a_truncated_body_keeps_nothing_and_a_retry_succeeds(server, tmp_path):
    server.routes["/a.tar.gz"] = cut(100 * 1024)
    target = tmp_path / "a.tar.gz"

    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/a.tar.gz", target)

    assert one_line(exc) == (
        f"downloading '{server.url}/a.tar.gz' failed: received 102400 of the "
        f"{len(BODY)} bytes announced (the connection ended early); nothing was "
        "kept, run the command again"
    )
    assert list(tmp_path.iterdir()) == []  # no archive, no .part

    server.routes["/a.tar.gz"] = whole()
    fetch(f"{server.url}/a.tar.gz", target)
    assert target.read_bytes() == BODY


def test_a_chunked_body_cut_short_is_one_line(server, tmp_path):
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.write(b"%x\r\n" % len(BODY) + BODY[:1000])

    server.routes["/a.tar.gz"] = route
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/a.tar.gz", tmp_path / "a.tar.gz")
    assert one_line(exc).startswith(
        f"downloading '{server.url}/a.tar.gz' failed: the server's answer broke off "
        "(IncompleteRead("
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["abc", "-5", "12 34", ""])
def test_an_invalid_content_length_is_one_line(server, tmp_path, value):
    server.routes["/a.tar.gz"] = header("Content-Length", value)
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/a.tar.gz", tmp_path / "a.tar.gz")
    assert one_line(exc) == (
        f"downloading '{server.url}/a.tar.gz' failed: invalid Content-Length "
        f"{value.strip()!r} (not a byte count); fix the server or use another URL"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_checksum_that_differs_keeps_nothing(server, tmp_path):
    server.routes["/a.tar.gz"] = whole()
    target = tmp_path / "a.tar.gz"
    with pytest.raises(DownloadError, match=r"its sha256 is [0-9a-f]{64}, not 0{64}"):
        fetch(f"{server.url}/a.tar.gz", target, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []

    fetch(f"{server.url}/a.tar.gz", target, sha256=hashlib.sha256(BODY).hexdigest())
    assert target.read_bytes() == BODY


def test_ctrl_c_mid_download_keeps_nothing(server, tmp_path):
    class Interrupting(Reporter):
        """A terminal whose user presses Ctrl-C once the first bytes arrived."""

        def progress(self, total: int, *label: str) -> Callable[[int], None]:
            def advance(count: int) -> None:
                raise KeyboardInterrupt

            return advance

    server.routes["/a.tar.gz"] = whole()
    with pytest.raises(KeyboardInterrupt):
        fetch(f"{server.url}/a.tar.gz", tmp_path / "a.tar.gz", reporter=Interrupting())
    assert list(tmp_path.iterdir()) == []


def test_an_existing_target_is_refused_and_untouched(server, tmp_path):
    server.routes["/a.tar.gz"] = whole()
    mine = tmp_path / "a.tar.gz"
    mine.write_text("my own file")
    mine.chmod(0o644)

    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/a.tar.gz", mine)

    assert one_line(exc) == (
        f"'{mine}' already exists; move it or choose --download-destination"
    )
    assert mine.read_text() == "my own file"
    assert stat.S_IMODE(mine.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_a_redirect_is_refused_by_default(server, tmp_path):
    server.routes["/a.tar.gz"] = whole()
    server.routes["/moved"] = redirect("/a.tar.gz")
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/moved", tmp_path / "a.tar.gz")
    assert one_line(exc) == (
        f"downloading '{server.url}/moved' failed: HTTP 302 redirect to "
        f"'{server.url}/a.tar.gz' refused: use that URL (or see "
        "DISKETTE_DOWNLOAD_ALLOW_REDIRECT)"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_allowed_redirect_to_http_is_followed(server, tmp_path):
    server.routes["/a.tar.gz"] = whole()
    server.routes["/moved"] = redirect("/a.tar.gz")
    target = tmp_path / "a.tar.gz"
    fetch(f"{server.url}/moved", target, allow_redirect=True)
    assert target.read_bytes() == BODY


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/a.tar.gz", "http://127.0.0.1:9/"])
def test_a_redirect_leaves_the_allowed_protocols_never(server, tmp_path, location):
    """Even with redirects allowed; the last case: plain http where only https is."""
    server.routes["/moved"] = redirect(location)
    only_https = location.startswith("http:")
    allowed = ("https://",) if only_https else DEFAULT_DOWNLOAD_PROTOCOLS
    url = f"{server.url}/moved"
    if only_https:  # the first hop must pass the same check: allow this server
        allowed = (*allowed, f"{server.url}/")
    with pytest.raises(DownloadError) as exc:
        fetch(url, tmp_path / "a.tar.gz", allow_redirect=True, allowed_protocols=allowed)
    assert one_line(exc) == (
        f"downloading '{url}' failed: HTTP 302 redirect to '{location}' refused: "
        f"not an allowed protocol ({', '.join(allowed)}; see "
        "DISKETTE_DOWNLOAD_ALLOWED_PROTOCOLS)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_to_a_local_file_is_refused_by_urllib_itself(server, tmp_path):
    server.routes["/moved"] = redirect("file:///etc/passwd")
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/moved", tmp_path / "a.tar.gz", allow_redirect=True)
    assert one_line(exc) == (
        f"downloading '{server.url}/moved' failed: HTTP 302 Found - Redirection to "
        "url 'file:///etc/passwd' is not allowed"
    )
    assert list(tmp_path.iterdir()) == []


def test_redirects_are_capped(server, tmp_path):
    server.routes["/loop"] = redirect("/loop")
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/loop", tmp_path / "a.tar.gz", allow_redirect=True)
    assert one_line(exc) == (
        f"downloading '{server.url}/loop' failed: HTTP 302 redirect to "
        f"'{server.url}/loop' refused: more than 10 redirects in a row"
    )
    assert list(tmp_path.iterdir()) == []


# Resuming, and the API key.


def ranged(
    body: bytes = BODY,
    cut_first: int | None = None,
    etag: str = '"v1"',
    stated: bytes | None = None,
) -> Route:
    """A server offering ranges, as diskette's endpoints do; the first answer
    is cut after ``cut_first`` bytes; it states the sha256 of ``stated``
    (default: of ``body``). Each request's headers are kept."""
    seen: list[dict[str, str]] = []

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(dict(handler.headers))
        start = 0
        wanted = handler.headers.get("Range")
        if wanted and handler.headers.get("If-Range") == etag:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            handler.send_response(206)
            handler.send_header(
                "Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}"
            )
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(body) - start))
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("ETag", etag)
        digest = base64.b64encode(hashlib.sha256(stated or body).digest()).decode()
        handler.send_header("Repr-Digest", f"sha-256=:{digest}:")
        handler.end_headers()
        if len(seen) == 1 and cut_first is not None:
            handler.wfile.write(body[start:cut_first])
            return
        handler.wfile.write(body[start:])

    route.seen = seen  # type: ignore[attr-defined]
    return route


def test_a_cut_download_resumes_where_it_broke(server, tmp_path):
    route = ranged(cut_first=100_000)
    server.routes["/s.tar.gz"] = route
    target = fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz")
    assert target.read_bytes() == BODY
    first, second = route.seen
    assert "Range" not in first
    assert second["Range"] == "bytes=100000-" and second["If-Range"] == '"v1"'


def test_a_changed_file_is_fetched_again_from_its_start(server, tmp_path):
    changed = os.urandom(len(BODY))
    route = ranged(changed, etag='"v2"')
    route_cut = ranged(BODY, cut_first=100_000)
    calls = []

    def swap(handler: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(1)  # the first answer is v1, cut; then the file is v2
        (route_cut if len(calls) == 1 else route)(handler)

    server.routes["/s.tar.gz"] = swap
    target = fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz")
    assert target.read_bytes() == changed


@pytest.mark.parametrize("whose", ["server", "caller"])
def test_bytes_that_are_not_the_stated_sha256_are_refused(server, tmp_path, whose):
    server.routes["/s.tar.gz"] = ranged(stated=b"other" if whose == "server" else None)
    expected = "0" * 64 if whose == "caller" else None
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz", sha256=expected)
    assert f"its sha256 is {hashlib.sha256(BODY).hexdigest()}, not " in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def asking(route: Route, realm: str = "diskette") -> Route:
    """``route`` behind a key, as diskette's endpoints are: 401 and a bearer
    challenge to a request without one. Each request's headers are kept."""
    seen: list[dict[str, str]] = []

    def guarded(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(dict(handler.headers))
        if handler.headers.get("Authorization") != "Bearer k":
            body = b'{"error": "an API key is needed"}'
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", f'Bearer realm="{realm}"')
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        route(handler)

    guarded.seen = seen  # type: ignore[attr-defined]
    return guarded


def test_the_key_goes_only_to_a_server_that_asks_for_it(server, tmp_path):
    server.routes["/plain.tar.gz"] = plain = ranged()
    server.routes["/asks.tar.gz"] = asks = asking(ranged(cut_first=100_000))
    fetch(f"{server.url}/plain.tar.gz", tmp_path / "plain.tar.gz", api_key="k")
    assert "Authorization" not in plain.seen[0]

    fetch(f"{server.url}/asks.tar.gz", tmp_path / "asks.tar.gz", api_key="k")
    assert (tmp_path / "asks.tar.gz").read_bytes() == BODY
    first, answered, resumed = asks.seen
    assert "Authorization" not in first
    assert answered["Authorization"] == resumed["Authorization"] == "Bearer k"
    assert resumed["Range"] == "bytes=100000-"


def test_a_challenge_of_another_realm_gets_no_key(server, tmp_path):
    server.routes["/s.tar.gz"] = other = asking(ranged(), realm="elsewhere")
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz", api_key="k")
    assert "HTTP 401" in one_line(exc)
    assert [h.get("Authorization") for h in other.seen] == [None]


def test_the_key_never_follows_a_redirect(server, tmp_path):
    final = ranged()
    server.routes["/s.tar.gz"] = final
    server.routes["/moved"] = moved = asking(redirect("/s.tar.gz"))
    fetch(f"{server.url}/moved", tmp_path / "s.tar.gz", allow_redirect=True, api_key="k")
    assert moved.seen[1]["Authorization"] == "Bearer k"
    assert "Authorization" not in final.seen[0]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/s", True),
        ("http://127.0.0.1:8000/s", True),
        ("http://[::1]:8000/s", True),
        ("http://localhost/s", True),
        ("http://example.com/s", False),
        ("http://10.0.0.1/s", False),
        ("http://localhost.example.com/s", False),
        ("ftp://127.0.0.1/s", False),
    ],
)
def test_a_key_travels_only_encrypted_or_within_this_machine(url, allowed):
    assert _may_carry_key(url) is allowed


def test_a_download_larger_than_the_free_space_is_refused_before_it_starts(
    server, tmp_path
):
    announced = 8 * 1024 * 1024

    def huge(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(announced))
        handler.end_headers()
        handler.wfile.write(b"\0" * 65536)  # the rest never comes: it is not asked for

    server.routes["/big.tar.gz"] = huge
    small = tmp_path / "small"
    small.mkdir()
    with tmpfs(small, "2m"):
        with pytest.raises(DownloadError) as exc:
            fetch(f"{server.url}/big.tar.gz", small / "big.tar.gz")
        assert one_line(exc).startswith(f"'{small}' has ")
        assert (
            "needs 8.0 MiB: free some space or choose another --download-destination"
            in (one_line(exc))
        )
        assert list(small.iterdir()) == []


def test_a_resumed_part_longer_than_announced_is_stopped_at_once(server, tmp_path):
    calls: list[int] = []

    def lying(handler: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            ranged(cut_first=100_000)(handler)
            return
        handler.send_response(206)  # the rest, then on and on, with no length
        handler.send_header("Content-Range", f"bytes 100000-{len(BODY) - 1}/{len(BODY)}")
        handler.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(64):
                handler.wfile.write(b"\0" * 1024 * 1024)

    server.routes["/s.tar.gz"] = lying
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz")
    assert f"received more than the {len(BODY)} bytes announced" in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_a_body_of_no_size_stops_before_the_disk_is_full(server, tmp_path, monkeypatch):
    monkeypatch.setattr("diskette.download.UNSIZED_RESERVE", 3 * 1024 * 1024)
    monkeypatch.setattr("diskette.download.UNSIZED_CHECK", 1024 * 1024)

    def endless(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(64):
                handler.wfile.write(b"\0" * 1024 * 1024)

    server.routes["/s.tar.gz"] = endless
    small = tmp_path / "small"
    small.mkdir()
    with tmpfs(small, "6m"):
        with pytest.raises(DownloadError) as exc:
            fetch(f"{server.url}/s.tar.gz", small / "s.tar.gz")
        assert "the server announced no size and has sent" in one_line(exc)
        assert list(small.iterdir()) == []


@pytest.mark.parametrize("kind", ["length and chunked", "a part for the whole"])
def test_answers_no_server_should_send_are_refused(server, tmp_path, kind):
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        if kind == "length and chunked":
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n")
        else:
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes 0-99/{len(BODY)}")
            handler.send_header("Content-Length", "100")
            handler.end_headers()
            handler.wfile.write(BODY[:100])

    server.routes["/s.tar.gz"] = route
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz")
    expected = (
        "sent both Content-Length and Transfer-Encoding"
        if kind == "length and chunked"
        else "sent a part (206) when the whole file was asked for"
    )
    assert expected in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_a_servers_words_never_reach_the_terminal_raw(server, tmp_path):
    def hostile(handler: http.server.BaseHTTPRequestHandler) -> None:
        body = json.dumps({"error": "\x1b[2J\x1b]0;owned\x07bad " + "x" * 1000}).encode()
        handler.send_response(403, "No\x1b[31m")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.routes["/s.tar.gz"] = hostile
    with pytest.raises(DownloadError) as exc:
        fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz")
    message = one_line(exc)
    assert all(c.isprintable() for c in message)
    assert len(message) < 500 and message.endswith("…")


def test_a_key_to_loopback_never_goes_through_a_proxy(server, tmp_path, monkeypatch):
    proxied = Server()  # what an http_proxy would receive
    proxied.routes["/s.tar.gz"] = whole()
    try:
        server.routes["/s.tar.gz"] = whole()
        monkeypatch.setenv("http_proxy", proxied.url)
        monkeypatch.setenv("no_proxy", "")
        fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz", api_key="k")
    finally:
        proxied.stop()
    assert (tmp_path / "s.tar.gz").read_bytes() == BODY
    assert proxied.requests == 0


def test_a_file_a_killed_download_left_is_removed_by_the_next(server, tmp_path):
    left = tmp_path / ".s.tar.gz.abc123.part"
    left.write_bytes(b"half")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    server.routes["/s.tar.gz"] = whole()
    fetch(f"{server.url}/s.tar.gz", tmp_path / "s.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tar.gz"]


def test_a_server_that_never_answers_names_the_timeout_setting(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/s.tar.gz"
        with pytest.raises(DownloadError) as exc:
            fetch(url, tmp_path / "s.tar.gz", timeout=0.5)
    finally:
        silent.close()
    assert one_line(exc) == (
        f"downloading '{url}' failed: the server did not answer for 0.5 s "
        "(DISKETTE_DOWNLOAD_TIMEOUT); try again, or raise it"
    )
    assert list(tmp_path.iterdir()) == []
