"""The daily pull over SSH, against ``ssh dumpdata | loaddata`` and ``rsync``.

Loopback only: a real ``sshd`` on 127.0.0.1 (``tests/sshd.py``) serves a
"host" copy of the sandbox with ``--media-mb`` of incompressible media (half
in 8 MB files, half in 32 KB ones). Two "laptop" copies pull from it, each
step its own process (wall time and peak RSS from ``wait4``):

- diskette: ``fab -H remote pull-snapshot --yes``, safety snapshot of the
  laptop's own data and media included, the way a developer runs it;
- by hand, the obvious alternative: ``manage.py flush``, then ``ssh host
  manage.py dumpdata | manage.py loaddata -`` for the data, and ``rsync -a
  --delete`` of the media folder (no safety net, no check).

First a whole pull each, then ``--runs`` rounds of the next morning: on the
host ``--changed`` percent of the media's bytes are rewritten (a tenth of
the files of each size, rewritten whole) and each laptop pulls again. For
diskette the bytes moved are the delta archive and the list of the
laptop's media it sent; the targets (issue 18) are a first pull within 1.5x
of the pair, a second one faster than the pair's second, under 15% of the
first pull's time and moving under 2% of the media's bytes.

Run from the repository with the ``dev`` and ``remote`` extras:
``python benchmarks/daily_pull.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.registry import LARGE, SMALL, Step, print_table  # noqa: E402
from tests.projects import BIN, SandboxCopy  # noqa: E402
from tests.sshd import SSHServer, find_sshd, start_sshd  # noqa: E402

#: What the hand-made pair dumps: the models DISKETTE_APPS names, with
#: natural keys so that rows ``migrate`` made are not duplicated.
DUMPDATA = (
    "dumpdata --natural-foreign --natural-primary auth.group auth.user sites demo shop"
)


def fill(media: Path, megabytes: int) -> None:
    """Half the bytes in 8 MB files, half in 32 KB files."""
    half = megabytes * 1024 * 1024 // 2
    for size, folder in ((LARGE, "videos"), (SMALL, "thumbs")):
        (media / folder).mkdir(parents=True, exist_ok=True)
        for index in range(max(1, half // size)):
            (media / folder / f"{index:05}.bin").write_bytes(os.urandom(size))


def change(media: Path, percent: float, rng: random.Random) -> int:
    """Rewrite whole files until ``percent`` of the bytes changed, in both
    sizes alike; returns the bytes rewritten."""
    files = sorted(p for p in media.rglob("*.bin"))
    total = sum(p.stat().st_size for p in files)
    budget, rewritten = total * percent / 100, 0
    for folder in ("videos", "thumbs"):
        pool = [p for p in files if p.parent.name == folder]
        rng.shuffle(pool)
        share = budget / 2
        done = 0
        for path in pool:
            if done >= share:
                break
            size = path.stat().st_size
            path.write_bytes(os.urandom(size))
            done += size
        rewritten += done
    return rewritten


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[Step, str]:
    """Run ``command``; its wall time, peak RSS, and standard output."""
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        output.seek(0)
        errors.seek(0)
        if status:
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read().decode()}")
        return Step(seconds, usage.ru_maxrss / 1024), output.read().decode()


def laptop(root: Path, host: SandboxCopy, sshd: SSHServer) -> SandboxCopy:
    copy = SandboxCopy.create(root)
    copy.manage("diskette_reset", "--noinput")
    copy.manage("demo_seed", "--books", "12", "--seed", "2")
    (copy.root / "fabfile.py").write_text("from diskette.remote import ns\n")
    (copy.root / "fabric.yaml").write_text(
        "diskette:\n  remote:\n"
        f"    project_dir: {host.root}\n    python: {sys.executable}\n"
    )
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media-mb", type=int, default=1024, help="default 1024")
    parser.add_argument("--changed", type=float, default=1.0, help="percent, default 1")
    parser.add_argument("--runs", type=int, default=3, help="mornings, default 3")
    options = parser.parse_args()
    if find_sshd() is None:
        raise SystemExit("needs OpenSSH's sshd (apt install openssh-server)")
    with tempfile.TemporaryDirectory(prefix="diskette-bench-") as folder:
        # A cache of its own, empty: the first pull is a new user's, whatever
        # earlier runs left (media indexes, migrated databases).
        os.environ["XDG_CACHE_HOME"] = str(Path(folder) / "cache")
        rows, moved = run(Path(folder), options.media_mb, options.changed, options.runs)
    print(
        f"\nA pull of {options.media_mb} MB of media over SSH on 127.0.0.1, then "
        f"{options.runs} pulls after {options.changed:g}% of its bytes changed, best "
        f"of them ({os.cpu_count()} cores)\n"
    )
    print_table(rows)
    print()
    for line in moved:
        print(line)


def run(
    root: Path, megabytes: int, percent: float, runs: int
) -> tuple[list[tuple], list[str]]:
    sshd = start_sshd(root / "sshd")
    try:
        return _run(root, sshd, megabytes, percent, runs)
    finally:
        sshd.stop()


def _run(
    root: Path, sshd: SSHServer, megabytes: int, percent: float, runs: int
) -> tuple[list[tuple], list[str]]:
    host = SandboxCopy.create(root / "host")
    host.manage("diskette_reset", "--noinput")
    host.manage("demo_seed", "--books", "12", "--seed", "1")
    print(f"Writing {megabytes} MB of media", flush=True)
    media = host.root / "var" / "media"
    fill(media, megabytes)
    media_bytes = sum(p.stat().st_size for p in media.rglob("*") if p.is_file())
    ours_laptop = laptop(root / "laptop", host, sshd)
    hand_laptop = laptop(root / "by-hand", host, sshd)
    fab = [str(BIN / "fab"), "-S", str(sshd.ssh_config), "-H", "remote"]
    pull = [*fab, "pull-snapshot", "--yes", "--json"]
    ssh = f"ssh -F {shlex.quote(str(sshd.ssh_config))}"
    python = shlex.quote(sys.executable)
    remote_dump = shlex.quote(
        f"cd {shlex.quote(str(host.root))} && "
        f"DJANGO_SETTINGS_MODULE={host.settings} {python} manage.py {DUMPDATA}"
    )
    by_hand = [
        "sh",
        "-c",
        f"{python} manage.py flush --noinput && "
        f"{ssh} remote {remote_dump} | {python} manage.py loaddata --format=json - && "
        f"rsync -a --delete -e {shlex.quote(ssh)} "
        f"remote:{shlex.quote(str(media))}/ var/media/",
    ]

    print("First pulls", flush=True)
    first, answer = measure(pull, ours_laptop.root, ours_laptop.env)
    first_size = json.loads(answer)["size"]
    hand_first, _ = measure(by_hand, hand_laptop.root, hand_laptop.env)

    rng = random.Random(18)
    seconds, hands, moved_bytes = [], [], []
    for morning in range(runs):
        print(f"Morning {morning + 1}: {percent:g}% of the media changed", flush=True)
        change(media, percent, rng)
        second, answer = measure(pull, ours_laptop.root, ours_laptop.env)
        listed = _list_size(ours_laptop)
        moved_bytes.append(json.loads(answer)["size"] + listed)
        seconds.append(second)
        hand, _ = measure(by_hand, hand_laptop.root, hand_laptop.env)
        hands.append(hand)
    best = min(seconds, key=lambda s: s.seconds)
    hand_best = min(hands, key=lambda s: s.seconds)
    moved = max(moved_bytes)
    if ours_laptop.fingerprint() != host.fingerprint():
        raise SystemExit("the pulled laptop differs from the host")
    rows = [
        (
            "first pull (safety net included)",
            first,
            "ssh dumpdata \\| loaddata + rsync",
            hand_first,
        ),
        (
            f"pull after {percent:g}% changed",
            best,
            "ssh dumpdata \\| loaddata + rsync",
            hand_best,
        ),
        (f"pull after {percent:g}% changed", best, "diskette's first pull", first),
    ]
    notes = [
        f"- second pull: {100 * best.seconds / first.seconds:.1f}% of the first pull's "
        "time (target: under 15%)",
        f"- bytes moved by a second pull: {moved / 1024 / 1024:.1f} MB, "
        f"{100 * moved / media_bytes:.2f}% of the media's {media_bytes / 1024 / 1024:.0f} MB "
        f"(target: under 2%); the first pull moved {first_size / 1024 / 1024:.0f} MB",
        f"- first pull: {first.seconds / hand_first.seconds:.2f}x the hand-made pair's time "
        "(target: within 1.5x)",
    ]
    return rows, notes


def _list_size(copy: SandboxCopy) -> int:
    """The bytes of the list of media a pull sends the host."""
    listed = subprocess.run(
        [sys.executable, "manage.py", "diskette_index", "--output", "-", "--read-only"],
        cwd=copy.root,
        env=copy.env,
        capture_output=True,
        check=True,
    )
    return len(listed.stdout)


if __name__ == "__main__":
    main()
