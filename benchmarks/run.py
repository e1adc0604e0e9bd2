"""diskette against the plain alternative, on the same machine in the same run.

For each database (SQLite, PostgreSQL), in a fresh copy of the sandbox filled
by ``demo_bulk_seed`` (``--rows`` objects, ``--media-mb`` of media) and
``shop_seed`` (every model kind, about 1% more rows):

- dump: ``diskette_dump`` against ``dumpdata --natural-foreign`` into
  ``.json`` plus ``tar czf`` of the data and the media;
- load: ``diskette_load`` (``loaddata`` underneath) and ``diskette_load
  --fast`` against ``loaddata`` of that ``.json`` plus ``tar xzf``, each into
  a freshly reset database; diskette's loads must give the same fingerprint
  as the original;
- media alone, both ways, against ``tar``, ``--repeat`` times in turn, the
  best of each kept; on PostgreSQL, ``pg_dump -Fc`` and ``pg_restore`` as the
  native floor.

Each step runs as its own process: wall time and peak RSS (from ``wait4``)
are measured per process, after a ``sync`` so that the previous step's
writes are not billed to it. Media steps take seconds and the disk of a
shared machine is noisy (the same ``tar xzf`` took from 1.2 to 4.4 s here),
so they run several times, alternating diskette and tar, and the fastest run
of each counts, as ``timeit`` does. Prints a table of time, rows/s, MB/s and peak RSS
with the ratio to the plain alternative, and writes it, with the machine it
ran on, to ``--output``. Run by ``inv bench``; loopback and local files only.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.databases import server_settings_body  # noqa: E402
from tests.projects import SandboxCopy  # noqa: E402

#: The models the sandbox's DISKETTE_APPS dump, for ``dumpdata``.
MODELS = ["auth.Group", "auth.User", "sites", "demo", "shop"]


@dataclass
class Step:
    seconds: float
    rss_mb: float


def measure(copy: SandboxCopy, *commands: list[str]) -> Step:
    """Run ``commands`` one after the other; total time, highest peak RSS."""
    total, peak = 0.0, 0.0
    for command in commands:
        os.sync()
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=copy.root,
            env=copy.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        total += time.perf_counter() - started
        if status != 0:
            raise SystemExit(
                f"{' '.join(command)} failed:\n{process.stderr.read().decode()}"
            )
        peak = max(peak, usage.ru_maxrss / 1024)  # kilobytes on Linux
    return Step(total, peak)


def best_of(
    repeat: int,
    prepare: Callable[[], None],
    ours: Callable[[], Step],
    plain: Callable[[], Step],
) -> tuple[Step, Step]:
    """Run ``ours`` and ``plain`` in turn ``repeat`` times; the fastest run of each."""
    runs: list[tuple[Step, Step]] = []
    for _ in range(repeat):
        prepare()
        mine = ours()
        prepare()
        runs.append((mine, plain()))
    return (
        min((run[0] for run in runs), key=lambda step: step.seconds),
        min((run[1] for run in runs), key=lambda step: step.seconds),
    )


def mb(path: Path) -> float:
    """Size of ``path`` in MiB, taken now: the work folder goes at the end."""
    return path.stat().st_size / 2**20


def bench(database: str, rows: int, media_mb: int, repeat: int, work: Path) -> list[tuple]:
    copy = SandboxCopy.create(work / database)
    manage = [sys.executable, "manage.py"]
    if database == "postgres":
        copy.use_settings(
            copy.write_settings("settings_db", server_settings_body(server="postgres"))
        )
    copy.manage("diskette_reset", "--noinput")
    print(f"[{database}] generating {rows} rows and {media_mb} MB of media...", flush=True)
    copy.manage("demo_bulk_seed", "--rows", str(rows), "--media-mb", str(media_mb))
    # Every model kind of the shop app too, about 1% of the rows.
    copy.manage("shop_seed", "--scale", str(max(rows // 10_000, 1)))
    original = copy.fingerprint()
    out = copy.root / "out"
    out.mkdir()
    media = ["-C", str(copy.root), "var/media"]
    results = []

    def reset() -> None:
        copy.manage("diskette_reset", "--noinput")
        shutil.rmtree(copy.root / "var" / "media")

    print(f"[{database}] dump", flush=True)
    ours = measure(copy, [*manage, "diskette_dump", "--destination", str(out)])
    plain = measure(
        copy,
        [*manage, "dumpdata", *MODELS, "--natural-foreign", "-o", str(out / "data.json")],
        ["tar", "czf", str(out / "plain.tar.gz"), "-C", str(out), "data.json", *media],
    )
    archive = out / "diskette_data_storages.tar.gz"
    results.append(("dump (data + media)", ours, plain, "dumpdata + tar czf", mb(archive)))
    ours_media, tar_media = best_of(
        repeat,
        lambda: None,
        lambda: measure(
            copy, [*manage, "diskette_dump", "--no-data", "--destination", str(out)]
        ),
        lambda: measure(copy, ["tar", "czf", str(out / "media.tar.gz"), *media]),
    )
    results.append(
        (
            "dump media only",
            ours_media,
            tar_media,
            "tar czf",
            mb(out / "diskette_storages.tar.gz"),
        )
    )

    print(f"[{database}] load", flush=True)
    reset()
    ours = measure(copy, [*manage, "diskette_load", str(archive), "--keep"])
    if copy.fingerprint() != original:
        raise SystemExit("diskette_load did not restore the same data")
    reset()
    fast = measure(copy, [*manage, "diskette_load", str(archive), "--keep", "--fast"])
    if copy.fingerprint() != original:
        raise SystemExit("diskette_load --fast did not restore the same data")
    reset()
    plain = measure(
        copy,
        [*manage, "loaddata", str(out / "data.json")],
        ["tar", "xzf", str(out / "plain.tar.gz"), "-C", str(copy.root), "var/media"],
    )
    results.append(("load (data + media)", ours, plain, "loaddata + tar xzf", mb(archive)))
    results.append(
        ("load --fast (data + media)", fast, plain, "loaddata + tar xzf", mb(archive))
    )
    media_archive = out / "diskette_storages.tar.gz"
    ours_media, tar_media = best_of(
        repeat,
        lambda: shutil.rmtree(copy.root / "var" / "media"),
        lambda: measure(
            copy, [*manage, "diskette_load", str(media_archive), "--keep", "--no-data"]
        ),
        lambda: measure(
            copy, ["tar", "xzf", str(out / "media.tar.gz"), "-C", str(copy.root)]
        ),
    )
    results.append(
        (
            "load media only",
            ours_media,
            tar_media,
            "tar xzf",
            mb(out / "diskette_storages.tar.gz"),
        )
    )

    if database == "postgres":
        results += native_postgres(copy, out, rows)
    return [(database, rows, *result) for result in results]


def bench_memory(rows: int, work: Path) -> list[tuple]:
    """diskette's dump and ``load --fast`` alone, on SQLite, at ``rows``: flat memory.

    The plain alternative is left out: ``loaddata`` already needs more than
    the limit at the default size, and would take most of an hour here.
    """
    copy = SandboxCopy.create(work / "memory")
    manage = [sys.executable, "manage.py"]
    copy.manage("diskette_reset", "--noinput")
    print(f"[memory] generating {rows} rows...", flush=True)
    copy.manage("demo_bulk_seed", "--rows", str(rows), "--media-mb", "8")
    original = copy.fingerprint()
    out = copy.root / "out"
    out.mkdir()
    print("[memory] dump and load --fast", flush=True)
    dump = measure(copy, [*manage, "diskette_dump", "--destination", str(out)])
    archive = out / "diskette_data_storages.tar.gz"
    copy.manage("diskette_reset", "--noinput")
    shutil.rmtree(copy.root / "var" / "media")
    load = measure(copy, [*manage, "diskette_load", str(archive), "--keep", "--fast"])
    if copy.fingerprint() != original:
        raise SystemExit("diskette_load --fast did not restore the same data")
    size = mb(archive)
    return [
        ("sqlite", rows, "dump (data + 8 MB media)", dump, None, "", size),
        ("sqlite", rows, "load --fast (data + 8 MB media)", load, None, "", size),
    ]


def native_postgres(copy: SandboxCopy, out: Path, rows: int) -> list[tuple]:
    from tests.postgres import find_bindir, postgres_settings

    settings = postgres_settings()
    name = copy.manage(
        "shell",
        "-c",
        "from django.db import connection; print(connection.settings_dict['NAME'])",
    ).stdout.split()[-1]
    connect = ["-h", settings["HOST"], "-p", settings["PORT"], "-U", settings["USER"]]
    bindir = find_bindir()
    dump = measure(
        copy, [str(bindir / "pg_dump"), *connect, "-Fc", "-f", str(out / "db.dump"), name]
    )
    copy.manage("diskette_reset", "--noinput")
    restore = measure(
        copy,
        [
            str(bindir / "pg_restore"),
            *connect,
            "--clean",
            "--if-exists",
            "-d",
            name,
            str(out / "db.dump"),
        ],
    )
    size = mb(out / "db.dump")
    return [
        ("pg_dump -Fc (data only)", dump, None, "", size),
        ("pg_restore (data only)", restore, None, "", size),
    ]


def table(results: list[tuple]) -> str:
    lines = [
        "| database | rows | step | time | rows/s | MB/s | peak RSS | plain alternative | its time | its peak RSS | speed ratio |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for database, rows, name, ours, plain, label, megabytes in results:
        ratio = f"{plain.seconds / ours.seconds:.2f}x" if plain else ""
        lines.append(
            f"| {database} | {rows:,} | {name} | {ours.seconds:.1f} s | "
            f"{rows / ours.seconds:,.0f} | {megabytes / ours.seconds:.1f} | {ours.rss_mb:.0f} MB | "
            f"{label} | {f'{plain.seconds:.1f} s' if plain else ''} | "
            f"{f'{plain.rss_mb:.0f} MB' if plain else ''} | {ratio} |"
        )
    return "\n".join(lines)


#: The targets of issue 6: (step, plain alternative must be this many times slower).
TARGETS = [
    ("dump (data + media)", 3.0, "dump at least 3x faster than dumpdata + tar czf"),
    ("load --fast (data + media)", 3.0, "load at least 3x faster than loaddata + tar xzf"),
    ("dump media only", 1.0, "media archiving at least as fast as tar czf"),
    ("load media only", 1.0, "media extraction at least as fast as tar xzf"),
]
RSS_LIMIT_MB = 200


def verdicts(results: list[tuple]) -> str:
    """Each target, met or not, by how much, from this run's ratios."""
    lines = ["## Targets", ""]
    for database in dict.fromkeys(r[0] for r in results):
        steps = {r[2]: r for r in results if r[0] == database}
        for step, wanted, text in TARGETS:
            _, _, _, ours, plain, _, _ = steps[step]
            ratio = plain.seconds / ours.seconds
            state = (
                "met"
                if ratio >= wanted
                else f"NOT met ({ratio / wanted:.0%} of the target)"
            )
            lines.append(f"- {database}: {text}: {ratio:.2f}x, {state}")
        peak = max(r[3].rss_mb for r in steps.values() if r[2].startswith(("dump", "load")))
        state = "met" if peak < RSS_LIMIT_MB else "NOT met"
        lines.append(
            f"- {database}: peak RSS of diskette's dump and load under {RSS_LIMIT_MB} MB "
            f"at this size: {peak:.0f} MB, {state}"
        )
    return "\n".join(lines) + "\n"


def machine() -> str:
    import django

    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Django {django.get_version()}, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--media-mb", type=int, default=256)
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres", "all", "none"],
        default="all",
        help="databases of the comparison (none: the memory run alone)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each media step")
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=1_000_000,
        help="rows of the memory-only run on SQLite (0: skip it)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).with_name("results.md")
    )
    options = parser.parse_args()
    if options.db == "none" and not options.memory_rows:
        parser.error("--db none with --memory-rows 0 leaves nothing to run")
    if options.db in ("postgres", "all"):
        os.environ.setdefault("DISKETTE_TEST_DB", "postgres")
    databases = {"all": ["sqlite", "postgres"], "none": []}.get(options.db, [options.db])
    results: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="diskette-bench-") as folder:
        for database in databases:
            results += bench(
                database, options.rows, options.media_mb, options.repeat, Path(folder)
            )
            # Written after each database: a later failure keeps what is done.
            report = render(results, [], options)
            options.output.write_text(report)
        if options.memory_rows:
            memory = bench_memory(options.memory_rows, Path(folder))
            report = render(results, memory, options)
            options.output.write_text(report)
    print(report)


def render(results: list[tuple], memory: list[tuple], options: argparse.Namespace) -> str:
    return (
        f"# Benchmark results\n\n{machine()}\n\n"
        f"`inv bench --rows {options.rows} --media-mb {options.media_mb} --db {options.db} "
        f"--repeat {options.repeat} --memory-rows {options.memory_rows}`; speed ratio = "
        "plain time / diskette time (above 1: diskette is faster); media-only steps: the "
        f"fastest of {options.repeat} alternating runs of each side.\n\n"
        + (table(results) + "\n\n" + verdicts(results) if results else "")
        + (memory_section(memory) if memory else "")
    )


def memory_section(memory: list[tuple]) -> str:
    """The memory-only run: its table and whether the limit held."""
    rows = memory[0][1]
    peak = max(step.rss_mb for _, _, _, step, _, _, _ in memory)
    state = "met" if peak < RSS_LIMIT_MB else "NOT met"
    return (
        f"\n## Memory at {rows:,} rows\n\n"
        "diskette alone, on SQLite; the load restores the same fingerprint.\n\n"
        + table(memory)
        + f"\n\n- peak RSS of diskette's dump and load --fast under {RSS_LIMIT_MB} MB "
        f"at {rows:,} rows: {peak:.0f} MB, {state}\n"
    )


if __name__ == "__main__":
    main()
