"""A real WSGI server on loopback: gunicorn serving a copy of the sandbox.

:func:`start_gunicorn` runs ``gunicorn project.wsgi`` in the copy's folder,
with its settings and environment, on a free port of 127.0.0.1, and waits
until it answers. :class:`CutProxy` relays a port to it and breaks the
first connections after a number of bytes of the answer, as a flaky
network does, to prove a download resumes.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.projects import BIN, SandboxCopy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class WsgiServer:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_gunicorn(site: SandboxCopy, workers: int = 2) -> WsgiServer:
    """Serve ``site`` with gunicorn's sync workers until :meth:`WsgiServer.stop`."""
    port = free_port()
    log = site.root / "gunicorn.log"
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
            "project.wsgi:application",
        ],
        cwd=site.root,
        env=site.env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    server = WsgiServer(process, port, log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(
                    f"gunicorn did not answer:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)


class CutProxy:
    """Relay 127.0.0.1:``port`` to ``upstream``; cut the first ``cuts``
    answers that reach ``after`` bytes there."""

    def __init__(self, upstream: int, after: int, cuts: int = 1) -> None:
        self.upstream = upstream
        self.after = after
        self.cuts = cuts
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(
                target=self._pipe, args=(client, server, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, True), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        """Relay; cut an answer at ``after`` bytes while cuts are left (an
        answer shorter than that, such as a 401, goes through whole)."""
        sent = 0
        try:
            while block := source.recv(65536):
                if answers and self.cut < self.cuts and sent + len(block) >= self.after:
                    self.cut += 1
                    target.sendall(block[: self.after - sent])
                    break
                target.sendall(block)
                sent += len(block)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        self.listener.close()
