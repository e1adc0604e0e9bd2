"""Pulls over HTTP with an API key, against curl, in the same run.

Loopback only: a copy of the sandbox with ``--media-mb`` of incompressible
media (half in 8 MB files, half in 32 KB ones) publishes one snapshot to a
registry folder and is served by gunicorn (two sync workers) on 127.0.0.1,
``diskette.urls`` included. Each step runs as its own process (wall time
and peak RSS from ``wait4``), the best of ``--runs``:

- fetching and verifying the latest snapshot (``diskette_load URL
  --check``: the download with its stated sha256, then the archive's
  checksums), against ``curl`` of the same URL then ``sha256sum`` (the
  obvious alternative: what a script would do), and ``curl`` alone, the
  floor: the server's own rate;
- the same through a relay that breaks the connection halfway once: the
  download resumes from where it broke, where a client without ranges
  (``curl`` without ``-C``) fetches the whole file again.

Run from the repository with the ``dev`` extra: ``python benchmarks/http_pull.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.registry import LARGE, SMALL, Step, best, print_table  # noqa: E402
from tests.projects import FOLDER_REGISTRY_SETTINGS, SandboxCopy  # noqa: E402
from tests.wsgiserver import CutProxy, start_gunicorn  # noqa: E402

PATH = "/diskette/snapshots/latest/"


def fill(media: Path, megabytes: int) -> int:
    """Half the bytes in 8 MB files, half in 32 KB files; returns the count."""
    half = megabytes * 1024 * 1024 // 2
    count = 0
    for size, folder in ((LARGE, "videos"), (SMALL, "thumbs")):
        (media / folder).mkdir(parents=True, exist_ok=True)
        for index in range(max(1, half // size)):
            (media / folder / f"{index:05}.bin").write_bytes(os.urandom(size))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media-mb", type=int, default=256, help="default 256")
    parser.add_argument("--runs", type=int, default=3, help="best of N (default 3)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="diskette-bench-") as folder:
        rows, size = run(Path(folder), options.media_mb, options.runs)
    print(
        f"\nA {size / 1024 / 1024:.0f} MB snapshot ({options.media_mb} MB of media) "
        f"served by gunicorn on 127.0.0.1, best of {options.runs} "
        f"({os.cpu_count()} cores)\n"
    )
    print_table(rows)


def run(root: Path, megabytes: int, runs: int) -> tuple[list[tuple], int]:
    site = SandboxCopy.create(root / "site")
    site.use_settings(site.write_settings("settings_bench", FOLDER_REGISTRY_SETTINGS))
    site.manage("diskette_reset", "--noinput")
    site.manage("demo_seed")
    print(f"Writing {megabytes} MB of media", flush=True)
    fill(site.root / "var" / "media", megabytes)
    site.manage("diskette_dump", "--publish")
    stored = next((site.root / "var" / "registry" / "archives").iterdir())
    key = json.loads(
        site.manage("diskette_apikey", "create", "--name", "bench", "--json").stdout
    )["key"]

    laptop = SandboxCopy.create(root / "laptop")
    laptop.manage("diskette_reset", "--noinput")
    env = {**laptop.env, "DISKETTE_API_KEY": key}
    downloaded = laptop.root / "curl.tar.gz"

    def remove_downloads() -> None:  # --check keeps what it downloaded
        for archive in laptop.root.glob("*.tar.gz"):
            archive.unlink()

    server = start_gunicorn(site)
    rows = []
    try:
        url = server.url + PATH
        load = [sys.executable, "manage.py", "diskette_load", url, "--check"]
        curl = ["curl", "-sSf", "-H", f"Authorization: Bearer {key}", "-o", str(downloaded)]
        print("Fetching", flush=True)
        ours = best(runs, load, laptop.root, env, before=remove_downloads)
        fetched = best(runs, [*curl, url], laptop.root, env, before=remove_downloads)
        summed = best(runs, ["sha256sum", str(downloaded)], laptop.root, env)
        rows.append(
            (
                "fetch and verify",
                ours,
                "curl + sha256sum",
                Step(fetched.seconds + summed.seconds, max(fetched.rss_mb, summed.rss_mb)),
            )
        )
        rows.append(("fetch and verify", ours, "curl alone (floor)", fetched))

        print("Fetching through a connection cut halfway", flush=True)
        relays: list[CutProxy] = []

        def new_relay() -> None:
            remove_downloads()
            relays.append(CutProxy(server.port, after=stored.stat().st_size // 2))

        cut_load = [sys.executable, "manage.py", "diskette_load", "--check"]
        resumed = _through(runs, cut_load, relays, new_relay, laptop.root, env)
        again = _through(runs, curl, relays, new_relay, laptop.root, env, retry=True)
        rows.append(("fetch and verify, cut once", resumed, "curl, fetched again", again))
    finally:
        server.stop()
    return rows, stored.stat().st_size


def _through(
    runs: int,
    command: list[str],
    relays: list[CutProxy],
    new_relay,
    cwd: Path,
    env: dict[str, str],
    retry: bool = False,
) -> Step:
    """The best of ``runs`` of ``command`` through a new cutting relay each
    time; with ``retry``, run once more when the first run fails (curl)."""
    steps = []
    for _ in range(runs):
        new_relay()
        url = relays[-1].url + PATH
        script = (
            f"{' '.join(map(repr, command))} {url!r}"
            if not retry
            else f"{' '.join(map(repr, command))} {url!r} || "
            f"{' '.join(map(repr, command))} {url!r}"
        )
        steps.append(best(1, ["sh", "-c", script], cwd, env))
        relays[-1].close()
    return min(steps, key=lambda s: s.seconds)


if __name__ == "__main__":
    main()
