"""Media on S3 and the snapshot registry, against boto3 and tar, in the same run.

Loopback only: it starts the test suite's S3 server (moto's, on 127.0.0.1,
``tests/s3server.py``), fills a media bucket with ``--media-mb`` of
incompressible files (half in 8 MB files, half in 32 KB ones, as uploads and
thumbnails are), and times, each step as its own process (wall time and peak
RSS from ``wait4``), the best of ``--runs``:

- dumping that media into an archive (``diskette_dump --no-data`` with
  ``{"storage": "default"}``), against the obvious alternative, ``aws s3
  sync`` then ``tar czf`` (boto3's ``download_file`` per object, ten at a
  time as the AWS CLI does, then ``tar``), and against the floor, the
  download alone;
- publishing that archive (``diskette_snapshots --publish``: verification,
  sha256, multipart upload, index), against ``aws s3 cp`` (boto3's
  ``upload_file``); then encrypted to one age key;
- downloading it back and verifying it (``diskette_load snapshot:ID
  --check``), against boto3's ``download_file``; then the encrypted one.

moto is a Python server: the absolute rates are its, not S3's; the ratios
say what diskette adds to the same transfers. On loopback a request costs
moto's time only; ``--latency-ms`` puts a relay between the clients and the
server that holds each answer that long, as a distant region does, where
the cost of a request per file shows. Needs the ``dev`` extra (moto,
django-storages, pyrage); run from the repository:
``python benchmarks/registry.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.projects import SandboxCopy  # noqa: E402
from tests.s3server import S3Server, start_s3  # noqa: E402

SMALL = 32 * 1024
LARGE = 8 * 1024 * 1024

#: boto3 as the AWS CLI uses it, one process per step: ``aws s3 sync`` (every
#: object of a bucket into a folder), ``aws s3 cp`` both ways.
BOTO = """
import sys, boto3, os
endpoint, key, secret, action, bucket, *rest = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
if action == "sync":  # as the AWS CLI: 10 objects at a time
    from concurrent.futures import ThreadPoolExecutor
    folder = rest[0]
    def get(key):
        target = os.path.join(folder, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, key, target)
    with ThreadPoolExecutor(10) as pool:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            list(pool.map(get, [item["Key"] for item in page.get("Contents", ())]))
elif action == "put":
    s3.upload_file(rest[0], bucket, rest[1])
elif action == "get":
    s3.download_file(bucket, rest[0], rest[1])
"""


@dataclass
class Step:
    seconds: float
    rss_mb: float


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> Step:
    os.sync()
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if status:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read().decode()}")
    return Step(seconds, usage.ru_maxrss / 1024)


def best(
    runs: int, command: list[str], cwd: Path, env: dict[str, str], before=None
) -> Step:
    steps = []
    for _ in range(runs):
        if before is not None:
            before()
        steps.append(measure(command, cwd, env))
    return min(steps, key=lambda s: s.seconds)


def fill(s3: S3Server, bucket: str, megabytes: int) -> int:
    """Half the bytes in 8 MB files, half in 32 KB files; returns the count."""
    client = s3.client()
    half = megabytes * 1024 * 1024 // 2
    count = 0
    for size, prefix in ((LARGE, "videos"), (SMALL, "thumbs")):
        for index in range(max(1, half // size)):
            client.put_object(
                Bucket=bucket, Key=f"{prefix}/{index:05}.bin", Body=os.urandom(size)
            )
            count += 1
    return count


class LatencyLink:
    """A TCP relay on loopback to ``port`` that holds each answer ``delay``
    seconds: one round trip per request, as to a distant region."""

    def __init__(self, port: int, delay: float) -> None:
        self.target, self.delay = port, delay
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            asked = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, server, asked, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, asked, True), daemon=True
            ).start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        asked: threading.Event,
        answers: bool,
    ) -> None:
        try:
            while data := source.recv(256 * 1024):
                if answers and asked.is_set():
                    asked.clear()
                    time.sleep(self.delay)
                elif not answers:
                    asked.set()
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media-mb", type=int, default=256, help="default 256")
    parser.add_argument("--runs", type=int, default=2, help="best of N (default 2)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0,
        help="round trip added per request (default 0)",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="diskette-bench-") as folder:
        root = Path(folder)
        s3 = start_s3(root / "s3.log")
        try:
            if options.latency_ms:
                link = LatencyLink(
                    int(s3.endpoint.rsplit(":", 1)[1]), options.latency_ms / 1000
                )
                s3.endpoint = f"http://127.0.0.1:{link.port}"
            rows = run(s3, root, options.media_mb, options.runs)
        finally:
            s3.stop()
    latency = f", {options.latency_ms:g} ms per request" if options.latency_ms else ""
    print(
        f"\n{options.media_mb} MB of media on moto's S3 server on 127.0.0.1{latency}, "
        f"best of {options.runs} ({os.cpu_count()} cores)\n"
    )
    print_table(rows)


def print_table(rows: list[tuple]) -> None:
    """``(step, ours, against, theirs)`` rows as results.md's Markdown table."""
    print("| step | diskette | peak RSS | against | theirs | peak RSS | ratio |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for name, ours, against, theirs in rows:
        ratio = theirs.seconds / ours.seconds
        print(
            f"| {name} | {ours.seconds:.2f} s | {ours.rss_mb:.0f} MB | {against} | "
            f"{theirs.seconds:.2f} s | {theirs.rss_mb:.0f} MB | "
            f"{ratio:.2f}x {'faster' if ratio >= 1 else 'slower'} |"
        )


def run(s3: S3Server, root: Path, megabytes: int, runs: int) -> list[tuple]:
    media, registry, sealed = "bench-media", "bench-registry", "bench-sealed"
    for bucket in (media, registry, sealed):
        s3.create_bucket(bucket)
    print(f"Filling the media bucket with {megabytes} MB", flush=True)
    files = fill(s3, media, megabytes)
    copy = SandboxCopy.create(root / "site")
    key_file = root / "age-key.txt"
    settings = s3.settings_body(
        {"default": {"bucket": media}, "diskette": {"bucket": registry}}
    ) + (
        'DISKETTE_STORAGES = [{"storage": "default"}]\n'
        f"DISKETTE_REGISTRY_IDENTITY = {str(key_file)!r}\n"
    )
    copy.use_settings(copy.write_settings("settings_bench", settings))
    env = copy.env
    python = [sys.executable]
    copy.manage("migrate", "--noinput")
    recipient = json.loads(copy.manage("diskette_snapshots", "--new-key", "--json").stdout)
    copy.write_settings(
        "settings_sealed",
        settings.replace(repr(registry), repr(sealed))
        + f"DISKETTE_REGISTRY_RECIPIENTS = [{recipient['recipient']!r}]\n",
    )
    sealed_env = {**env, "DJANGO_SETTINGS_MODULE": "project.settings_sealed"}
    archive = root / "site" / "var" / "diskette_storages.tar.gz"
    boto = [*python, "-c", BOTO, s3.endpoint, s3.admin.access_key, s3.admin.secret_key]
    synced = root / "synced"
    rows = []

    print(f"Dumping {files} files", flush=True)
    dump = best(runs, [*python, "manage.py", "diskette_dump", "--no-data"], copy.root, env)
    sync = best(
        runs,
        [*boto, "sync", media, str(synced)],
        root,
        env,
        before=lambda: subprocess.run(["rm", "-rf", str(synced)], check=True),
    )
    tar = best(
        runs,
        ["tar", "czf", str(root / "synced.tar.gz"), "-C", str(root), "synced"],
        root,
        env,
    )
    rows.append(
        (
            "dump S3 media",
            dump,
            "aws s3 sync + tar czf",
            Step(sync.seconds + tar.seconds, max(sync.rss_mb, tar.rss_mb)),
        )
    )
    rows.append(("dump S3 media", dump, "aws s3 sync alone (floor)", sync))

    print("Publishing", flush=True)
    publish = [
        *python,
        "manage.py",
        "diskette_snapshots",
        "--publish",
        str(archive),
        "--json",
    ]
    ours = best(runs, publish, copy.root, env)
    cp = best(
        runs, [*boto, "put", registry, str(archive), "plain/archive.tar.gz"], root, env
    )
    rows.append(("publish", ours, "aws s3 cp (upload)", cp))
    encrypted = best(runs, publish, copy.root, sealed_env)
    rows.append(("publish, age-encrypted", encrypted, "publish, not encrypted", ours))

    print("Pulling", flush=True)
    target = root / "pulled"
    target.mkdir()

    def clean() -> None:
        for leftover in target.iterdir():
            leftover.unlink()

    pull = [
        *python,
        "manage.py",
        "diskette_load",
        "snapshot:latest",
        "--check",
        "--no-storages",
        "--download-destination",
        str(target),
    ]
    ours = best(runs, pull, copy.root, env, before=clean)
    get = best(
        runs,
        [*boto, "get", registry, "plain/archive.tar.gz", str(target / "a")],
        root,
        env,
        before=clean,
    )
    rows.append(("pull and verify", ours, "aws s3 cp (download)", get))
    decrypted = best(runs, pull, copy.root, sealed_env, before=clean)
    rows.append(("pull and verify, age-encrypted", decrypted, "pull, not encrypted", ours))
    return rows


if __name__ == "__main__":
    main()
