"""Archive transfers over SSH: diskette's channel against scp and Fabric's SFTP.

Loopback only: it starts a throwaway OpenSSH ``sshd`` on 127.0.0.1 (as the
test suite does), writes an incompressible file of ``--size`` MB, and times,
in the same run: ``scp``, Fabric's ``Connection.get``/``put``, and
diskette's ``download``/``upload`` (which also hash every byte). It prints
each time with its ratio to ``scp``. Needs ``sshd``, ``scp`` and the
``remote`` extra; run from the repository: ``python benchmarks/transfer.py``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fabric import Config, Connection  # noqa: E402

from diskette.files import file_sha256  # noqa: E402
from diskette.ssh import connect  # noqa: E402
from diskette.transfer import RECEIVE_SCRIPT, download, upload  # noqa: E402
from tests.sshd import start_sshd  # noqa: E402


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=200, help="file size in MB (default 200)"
    )
    parser.add_argument("--runs", type=int, default=3, help="best of N runs (default 3)")
    size = parser.parse_args().size
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="diskette-bench-") as folder:
        root = Path(folder)
        server = start_sshd(root / "sshd")
        try:
            source = root / "archive.bin"
            with open(source, "wb") as out:
                for _ in range(size):
                    out.write(os.urandom(1024 * 1024))
            digest = file_sha256(source)
            target = root / "copy.bin"
            c = Connection("remote", config=Config(runtime_ssh_path=str(server.ssh_config)))
            # Diskette's own connection, as its tasks open it (AES-GCM first).
            ours = Connection(
                "remote", config=Config(runtime_ssh_path=str(server.ssh_config))
            )
            connect(ours)
            config = ["-F", str(server.ssh_config)]
            cases = {
                "download: scp": lambda: subprocess.run(
                    ["scp", "-q", *config, f"remote:{source}", str(target)], check=True
                ),
                "download: Fabric Connection.get (SFTP)": lambda: c.get(
                    str(source), str(target)
                ),
                "download: diskette (channel, sha256)": lambda: download(
                    ours, str(source), target, digest
                ),
                "upload: scp": lambda: subprocess.run(
                    ["scp", "-q", *config, str(source), f"remote:{target}"], check=True
                ),
                "upload: Fabric Connection.put (SFTP)": lambda: c.put(
                    str(source), str(target)
                ),
                "upload: diskette (channel, sha256)": lambda: upload(
                    ours,
                    source,
                    str(target),
                    receiver=lambda p: shlex.join(
                        [sys.executable, "-c", RECEIVE_SCRIPT, p]
                    ),
                ),
            }
            results = {}
            for name, run in cases.items():
                best = float("inf")
                for _ in range(runs):
                    target.unlink(missing_ok=True)
                    best = min(best, timed(run))
                results[name] = best
        finally:
            server.stop()
    print(f"{size} MB over SSH on 127.0.0.1, best of {runs} ({os.cpu_count()} cores)")
    for name, seconds in results.items():
        direction = name.split(":")[0]
        baseline = results[f"{direction}: scp"]
        print(
            f"  {name:<42} {seconds:6.2f} s  {size / seconds:7.1f} MB/s  "
            f"{baseline / seconds:4.2f}x scp"
        )


if __name__ == "__main__":
    main()
