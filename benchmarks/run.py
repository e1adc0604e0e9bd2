"""diskette against the other ways to do the same, on the same machine in the same run.

Each pass works in a fresh copy of the sandbox filled by ``demo_bulk_seed``
(rows objects, megabytes of media) and ``shop_seed`` (every model kind, about
1% more rows), on SQLite and on a throwaway PostgreSQL (``--db``):

- the comparison pass, at ``--rows`` with ``--media-mb`` of media:
  ``diskette_dump`` against ``dumpdata --natural-foreign`` into ``.json``
  plus ``tar czf`` of it and the media, and against django-dbbackup's
  ``dbbackup -z`` plus ``mediabackup -z``; the default ``diskette_load``
  against ``loaddata`` of that ``.json`` plus ``tar xzf``, and against
  ``dbrestore`` plus ``mediarestore``, each into a freshly reset database;
  diskette's data alone (``--no-storages``) both ways, against ``pg_dump -Fc``
  and ``pg_restore`` on PostgreSQL; and, in the first database's pass only
  (it does not depend on the database), the media alone both ways against
  ``tar``, ``--repeat`` times in turn, the best of each kept;
- ``dumpdata`` and ``loaddata`` take hours at a million rows: above
  ``--plain-rows`` they run at ``--plain-rows`` in a pass of their own, where
  diskette is timed beside them, so that every ratio compares runs of the
  same size (``--plain-rows 0``: not at all); ``diskette_load --loaddata``
  (Django's ``loaddata`` underneath, as slow as it) is timed only up to
  :data:`LOADDATA_ROWS`;
- the large pass, at ``--memory-rows`` (when above ``--rows``) with 8 MB of
  media: diskette's data alone both ways, against ``pg_dump -Fc`` and
  ``pg_restore`` on PostgreSQL: throughput and flat memory;
- the cost of anonymizing, in the comparison pass of each database (in the
  large pass with ``--rows 0``): diskette's data alone (``--no-storages``)
  dumped with the rules of :data:`ANONYMIZE_RULES`, from a settings module
  of their own, against the same dump from the settings every other step
  uses, which hold no rule; :data:`ANONYMIZE_REPEAT` alternating runs of
  each, the fastest kept. The anonymized archive's manifest must say so, the
  other's must not.

Every load of data by diskette or dbbackup must give back the same
fingerprint (``demo_fingerprint``) as the seeded database. Each step runs as its own
process: wall time and peak RSS (from ``wait4``) are measured per process,
after a ``sync`` so that the previous step's writes are not billed to it.
Media steps take seconds and the disk of a shared machine is noisy (the same
``tar xzf`` took from 1.2 to 4.4 s here), so they run several times,
alternating diskette and tar, and the fastest run of each counts, as
``timeit`` does. Prints a table per pass (time, rows/s, MB/s and peak RSS of
both sides, how much faster or slower diskette is) and the targets of
:data:`TARGETS`, met or missed by how much, and writes them, with the
machine it ran on, to ``--output`` after each pass. Run by ``inv bench``;
loopback and local files only; needs the ``dev`` extra (django-dbbackup).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.databases import new_database_name, server_settings_body  # noqa: E402
from tests.projects import SandboxCopy  # noqa: E402

#: The member of an archive that says what it holds (diskette.archive.format).
MANIFEST = "manifest.json"
#: The models the sandbox's DISKETTE_APPS dump, for ``dumpdata``.
MODELS = ["auth.Group", "auth.User", "sites", "demo", "shop"]
#: ``diskette_load``'s flags for its default loader, and for Django's ``loaddata``.
DEFAULT_LOAD: list[str] = []
LOADDATA_LOAD = ["--loaddata"]
#: Largest size ``diskette_load --loaddata`` is timed at: it runs ``loaddata``
#: underneath, as slow as the plain alternative (461 s at 200,000 rows on SQLite).
LOADDATA_ROWS = 20_000
#: Media of the large pass: it measures the data.
LARGE_MEDIA_MB = 8
#: Anonymization rules the cost of anonymizing is timed with (issue 15):
#: those of a real project for the users ``demo_bulk_seed`` makes, and one
#: over the largest table, the reviews, for the cost of a rule per row.
ANONYMIZE_RULES = {
    "auth.User": {
        "email": "email",
        "first_name": "first_name",
        "last_name": "last_name",
        "username": "user_name",
        "password": "password",
    },
    "demo.Review": {"body": "text"},
}
ANONYMIZE_SECRET = "bench-secret-0123456789"
#: Settings lines of the anonymizing dump, after the copy's own settings.
ANONYMIZE_SETTINGS = (
    f"\nDISKETTE_ANONYMIZE = {ANONYMIZE_RULES!r}\n"
    f"DISKETTE_ANONYMIZE_SECRET = {ANONYMIZE_SECRET!r}\n"
)
#: Runs of the anonymized and the plain data dumps, alternating, the fastest
#: of each kept: the ratio of two noisy timings needs more than one of each.
ANONYMIZE_REPEAT = 3
#: Anonymizing may make a dump take at most this much longer (issue 15: under 30%).
ANONYMIZE_LIMIT = 1.30
#: Settings lines a copy gets for django-dbbackup: the app, and its own storage
#: as ``STORAGES["dbbackup"]``, which 4.2 and later read (5 refuses the older
#: ``DBBACKUP_STORAGE_OPTIONS``).
DBBACKUP_SETTINGS = """
from django.conf import global_settings

INSTALLED_APPS = [*INSTALLED_APPS, "dbbackup"]  # noqa: F405
STORAGES = {{
    **global_settings.STORAGES,
    "dbbackup": {{
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {{"location": {location!r}}},
    }},
}}
"""

# The steps of the tables, and the alternatives they are timed against.
DUMP = "dump (data + media)"
LOAD = "load (data + media)"
LOAD_LOADDATA = "load --loaddata (data + media)"
DUMP_DATA = "dump data only"
LOAD_DATA = "load data only"
DUMP_MEDIA = "dump media only"
LOAD_MEDIA = "load media only"
PLAIN_DUMP = "dumpdata + tar czf"
PLAIN_LOAD = "loaddata + tar xzf"
DBBACKUP_DUMP = "dbbackup -z + mediabackup -z"
DBBACKUP_LOAD = "dbrestore + mediarestore"
DUMP_ANONYMIZED = "dump data only, anonymized"
PG_DUMP = "pg_dump -Fc"
PG_RESTORE = "pg_restore"
TAR_DUMP = "tar czf"
TAR_LOAD = "tar xzf"
NO_RULES = "the same dump without rules"
# The passes.
COMPARISON = "comparison"
SMALLER = "dumpdata and loaddata at a smaller size"
LARGE = "large pass, data only"


@dataclass
class Step:
    seconds: float
    rss_mb: float


@dataclass
class Result:
    """One of diskette's steps, alone or against one alternative."""

    database: str
    rows: int
    step: str
    ours: Step
    megabytes: float  # of diskette's archive
    against: str = ""
    theirs: Step | None = None


@dataclass
class Pass:
    """What one fresh, seeded copy of the sandbox is used to time."""

    title: str
    database: str
    rows: int
    media_mb: int
    whole: bool = False  # diskette's dump and load of data + media
    plain: bool = False  # against dumpdata/loaddata + tar
    loaddata: bool = False  # diskette_load --loaddata too
    dbbackup: bool = False  # against django-dbbackup
    data_only: bool = False  # diskette's data alone, against pg_dump/pg_restore
    media_repeat: int = 0  # media alone against tar, so many times (0: not)
    anonymize: bool = False  # data alone, anonymized against without rules
    notes: list[str] = field(default_factory=list)


def plan(options: argparse.Namespace) -> list[Pass]:
    """The passes ``options`` ask for, each with what it leaves out and why."""
    databases = ["sqlite", "postgres"] if options.db == "all" else [options.db]
    rows, plain_rows = options.rows, options.plain_rows
    passes = []
    for database in databases if rows else []:
        plain = rows <= plain_rows
        passes.append(
            Pass(
                COMPARISON,
                database,
                rows,
                options.media_mb,
                whole=True,
                plain=plain,
                loaddata=plain and rows <= LOADDATA_ROWS,
                dbbackup=True,
                data_only=True,
                media_repeat=options.repeat if database == databases[0] else 0,
                anonymize=True,
            )
        )
    for database in databases if 0 < plain_rows < rows else []:
        passes.append(
            Pass(
                SMALLER,
                database,
                plain_rows,
                options.media_mb,
                whole=True,
                plain=True,
                loaddata=plain_rows <= LOADDATA_ROWS,
            )
        )
    for database in databases if options.memory_rows > rows else []:
        passes.append(
            Pass(
                LARGE,
                database,
                options.memory_rows,
                LARGE_MEDIA_MB,
                data_only=True,
                anonymize=not rows,  # where the comparison pass would time it
            )
        )
    for each in passes:
        each.notes = notes(each, options, databases[0])
    return passes


def notes(each: Pass, options: argparse.Namespace, first: str) -> list[str]:
    """What ``each`` leaves out, and why, for its section of the results."""
    said = []
    if each.whole and not each.plain:
        where = (
            f"above `--plain-rows` ({options.plain_rows:,}); they are timed at "
            f"{options.plain_rows:,} rows, beside diskette, in a pass below"
            if options.plain_rows
            else "`--plain-rows 0`"
        )
        said.append(f"`dumpdata` / `loaddata`: not run at {each.rows:,} rows, {where}.")
    if each.plain and not each.loaddata:
        said.append(
            f"`diskette_load --loaddata`: not timed above {LOADDATA_ROWS:,} rows: it runs "
            "`loaddata` underneath and takes as long as the `loaddata` row."
        )
    if each.title == COMPARISON and not each.media_repeat:
        said.append(
            f"media alone: timed in the {first} pass; it does not depend on the database."
        )
    if each.title == LARGE:
        said.append(
            f"diskette alone on the data (`--no-storages`; {LARGE_MEDIA_MB} MB of media "
            "seeded, left in place), and `pg_dump` / `pg_restore` on PostgreSQL; the plain "
            "and dbbackup alternatives belong to the comparison pass (`--rows`)."
        )
    if each.anonymize:
        rules = "; ".join(
            f"{label}: {', '.join(f'{name} ({rule})' for name, rule in fields.items())}"
            for label, fields in ANONYMIZE_RULES.items()
        )
        said.append(
            f"anonymized: the data alone (`--no-storages`) with the rules {rules}, "
            f"against {NO_RULES} (the settings every other step uses); the fastest of "
            f"{ANONYMIZE_REPEAT} alternating runs of each; target: under "
            f"{ANONYMIZE_LIMIT:.2f}x its time."
        )
    return said


@dataclass
class Sandbox:
    """A seeded copy of the sandbox, its fingerprint, and how to time steps in it."""

    copy: SandboxCopy
    each: Pass
    out: Path
    original: str
    database_name: str = ""
    #: The environment of the anonymizing dump: the copy's, with settings
    #: that add :data:`ANONYMIZE_RULES` to the copy's own.
    anonymized_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def seeded(cls, each: Pass, work: Path) -> Sandbox:
        copy = SandboxCopy.create(work / f"{each.database}-{each.rows}")
        out = copy.root / "out"
        out.mkdir()
        body, name = "", ""
        if each.database == "postgres":
            name = new_database_name("bench")
            body += server_settings_body(name, server="postgres")
        if each.dbbackup:
            body += DBBACKUP_SETTINGS.format(location=str(out / "dbbackup"))
        if body:
            copy.use_settings(copy.write_settings("settings_bench", body))
        copy.manage("diskette_reset", "--noinput")
        print(
            f"[{each.database}, {each.rows:,} rows] generating the data and "
            f"{each.media_mb} MB of media...",
            flush=True,
        )
        copy.manage(
            "demo_bulk_seed", "--rows", str(each.rows), "--media-mb", str(each.media_mb)
        )
        copy.manage("shop_seed", "--scale", str(max(each.rows // 10_000, 1)))
        sandbox = cls(copy, each, out, copy.fingerprint(), name)
        if each.anonymize:
            # Not write_settings: it starts from project.settings, and the
            # rules go over whichever settings the copy runs with.
            module = "settings_bench_anonymized"
            (copy.root / "project" / f"{module}.py").write_text(
                f"from {copy.settings} import *  # noqa: F403\n{ANONYMIZE_SETTINGS}"
            )
            sandbox.anonymized_env = {
                **copy.env,
                "DJANGO_SETTINGS_MODULE": f"project.{module}",
            }
        return sandbox

    def say(self, what: str) -> None:
        print(f"[{self.each.database}, {self.each.rows:,} rows] {what}", flush=True)

    def measure(self, *commands: list[str], env: dict[str, str] | None = None) -> Step:
        """Run ``commands`` one after the other (in ``env``, the copy's if
        ``None``); total time, highest peak RSS."""
        total, peak = 0.0, 0.0
        for command in commands:
            os.sync()
            # A file, not a pipe: a chatty step would fill a pipe and stall.
            with tempfile.TemporaryFile() as errors:
                started = time.perf_counter()
                process = subprocess.Popen(
                    command,
                    cwd=self.copy.root,
                    env=env or self.copy.env,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    stdin=subprocess.DEVNULL,
                )
                _, status, usage = os.wait4(process.pid, 0)
                total += time.perf_counter() - started
                if status != 0:
                    errors.seek(0)
                    raise SystemExit(
                        f"{' '.join(command)} failed:\n{errors.read().decode()}"
                    )
            peak = max(peak, usage.ru_maxrss / 1024)  # kilobytes on Linux
        return Step(total, peak)

    def manage(self, *args: str) -> list[str]:
        return [sys.executable, "manage.py", *args]

    def media(self, *args: str) -> list[str]:
        """``tar`` with ``args``, on the media folder."""
        return ["tar", *args, "-C", str(self.copy.root), "var/media"]

    def reset(self, *, data: bool = True, media: bool = True) -> None:
        if data:
            self.copy.manage("diskette_reset", "--noinput")
        if media:
            shutil.rmtree(self.copy.root / "var" / "media")

    def check(self, what: str) -> None:
        if self.copy.fingerprint() != self.original:
            raise SystemExit(f"{what} did not give back the same data")

    def dump(self, archive: str, *flags: str, env: dict[str, str] | None = None) -> Step:
        return self.measure(
            self.manage(
                "diskette_dump",
                "--destination",
                str(self.out),
                "--filename",
                archive,
                *flags,
            ),
            env=env,
        )

    def loading(self, archive: str, *flags: str) -> list[str]:
        return self.manage("diskette_load", str(self.out / archive), "--keep", *flags)

    def load(self, archive: str, *flags: str) -> Step:
        """``diskette_load`` of ``archive`` into a reset database, checked."""
        self.reset(media="--no-storages" not in flags)
        step = self.measure(self.loading(archive, *flags))
        self.check(f"diskette_load {' '.join(flags)}".strip())
        return step

    def mb(self, *names: str) -> float:
        """Size of the files ``names`` of the output folder, in MiB."""
        return sum((self.out / name).stat().st_size for name in names) / 2**20

    def versus(
        self,
        step: str,
        ours: Step,
        megabytes: float,
        alternatives: list[tuple[str, Callable[[], Step]]],
    ) -> list[Result]:
        """A row for ``ours`` against each alternative, timed now (one alone if none)."""
        rows = [
            Result(self.each.database, self.each.rows, step, ours, megabytes, label, run())
            for label, run in alternatives
        ]
        return rows or [Result(self.each.database, self.each.rows, step, ours, megabytes)]


def run_pass(each: Pass, work: Path) -> list[Result]:
    """Seed a copy, time every dump from the seeded data, then every load."""
    sandbox = Sandbox.seeded(each, work)
    sandbox.say("dump")
    results = dumps(sandbox)
    sandbox.say("load")
    results += loads(sandbox)
    shutil.rmtree(sandbox.copy.root)  # several GB at the default sizes
    return results


def dumps(sandbox: Sandbox) -> list[Result]:
    each, results = sandbox.each, []
    if each.whole:
        alternatives = []
        if each.plain:
            alternatives.append((PLAIN_DUMP, lambda: plain_dump(sandbox)))
        if each.dbbackup:
            alternatives.append((DBBACKUP_DUMP, lambda: dbbackup_dump(sandbox)))
        ours = sandbox.dump("whole.tar.gz")
        results += sandbox.versus(DUMP, ours, sandbox.mb("whole.tar.gz"), alternatives)
    if each.data_only:
        ours = sandbox.dump("data.tar.gz", "--no-storages")
        native = (
            [(PG_DUMP, lambda: pg_dump(sandbox))] if each.database == "postgres" else []
        )
        results += sandbox.versus(DUMP_DATA, ours, sandbox.mb("data.tar.gz"), native)
    if each.anonymize:
        results += anonymizing(sandbox)
    if each.media_repeat:
        ours, tar = best_of(
            each.media_repeat,
            lambda: None,
            lambda: sandbox.dump("media.tar.gz", "--no-data"),
            lambda: sandbox.measure(
                sandbox.media("czf", str(sandbox.out / "tar-media.tar.gz"))
            ),
        )
        results += sandbox.versus(
            DUMP_MEDIA, ours, sandbox.mb("media.tar.gz"), [(TAR_DUMP, lambda: tar)]
        )
    return results


def anonymizing(sandbox: Sandbox) -> list[Result]:
    """The data alone dumped with :data:`ANONYMIZE_RULES` against without any
    rule, alternating, the fastest of each; each archive's manifest checked."""
    ours, plain = best_of(
        ANONYMIZE_REPEAT,
        lambda: None,
        lambda: sandbox.dump(
            "anonymized.tar.gz", "--no-storages", env=sandbox.anonymized_env
        ),
        lambda: sandbox.dump("no-rules.tar.gz", "--no-storages"),
    )
    fields = anonymized_fields(sandbox.out / "anonymized.tar.gz")
    wanted = {label.lower(): set(rules) for label, rules in ANONYMIZE_RULES.items()}
    if fields != wanted:
        raise SystemExit(f"the anonymized dump anonymized {fields}, not {wanted}")
    if anonymized_fields(sandbox.out / "no-rules.tar.gz") is not None:
        raise SystemExit("the dump without rules says it is anonymized")
    ratio = ours.seconds / plain.seconds
    state = "met" if ratio < ANONYMIZE_LIMIT else "missed"
    sandbox.say(
        f"anonymizing: {ours.seconds:.1f} s, {plain.seconds:.1f} s without rules: "
        f"{ratio:.2f}x its time (target: under {ANONYMIZE_LIMIT:.2f}x), {state}"
    )
    return sandbox.versus(
        DUMP_ANONYMIZED,
        ours,
        sandbox.mb("anonymized.tar.gz"),
        [(NO_RULES, lambda: plain)],
    )


def anonymized_fields(archive: Path) -> dict[str, set[str]] | None:
    """The fields ``archive``'s manifest says were anonymized, by model label;
    ``None`` for an archive written raw."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MANIFEST)
        assert member is not None, f"{archive} has no {MANIFEST}"
        manifest = json.load(member)
    if not manifest.get("anonymized"):
        return None
    fields = manifest["anonymization"]["fields"]
    return {label: set(rules) for label, rules in fields.items()}


def loads(sandbox: Sandbox) -> list[Result]:
    each, results = sandbox.each, []
    if each.whole:
        alternatives = []
        if each.plain:
            alternatives.append((PLAIN_LOAD, lambda: plain_load(sandbox)))
        if each.dbbackup:
            alternatives.append((DBBACKUP_LOAD, lambda: dbbackup_load(sandbox)))
        size = sandbox.mb("whole.tar.gz")
        results += sandbox.versus(
            LOAD, sandbox.load("whole.tar.gz", *DEFAULT_LOAD), size, alternatives
        )
        if each.loaddata:
            plain = next(r.theirs for r in results if r.against == PLAIN_LOAD)
            slow = sandbox.load("whole.tar.gz", *LOADDATA_LOAD)
            results += sandbox.versus(
                LOAD_LOADDATA, slow, size, [(PLAIN_LOAD, lambda: plain)]
            )
    if each.data_only:
        ours = sandbox.load("data.tar.gz", *DEFAULT_LOAD, "--no-storages")
        native = (
            [(PG_RESTORE, lambda: pg_restore(sandbox))]
            if each.database == "postgres"
            else []
        )
        results += sandbox.versus(LOAD_DATA, ours, sandbox.mb("data.tar.gz"), native)
    if each.media_repeat:
        ours, tar = best_of(
            each.media_repeat,
            lambda: sandbox.reset(data=False),
            lambda: sandbox.measure(sandbox.loading("media.tar.gz", "--no-data")),
            lambda: sandbox.measure(
                sandbox.media("xzf", str(sandbox.out / "tar-media.tar.gz"))
            ),
        )
        results += sandbox.versus(
            LOAD_MEDIA, ours, sandbox.mb("media.tar.gz"), [(TAR_LOAD, lambda: tar)]
        )
    return results


def best_of(
    repeat: int,
    prepare: Callable[[], None],
    ours: Callable[[], Step],
    theirs: Callable[[], Step],
) -> tuple[Step, Step]:
    """Run ``ours`` and ``theirs`` in turn ``repeat`` times; the fastest run of each."""
    runs: list[tuple[Step, Step]] = []
    for _ in range(repeat):
        prepare()
        mine = ours()
        prepare()
        runs.append((mine, theirs()))
    return (
        min((run[0] for run in runs), key=lambda step: step.seconds),
        min((run[1] for run in runs), key=lambda step: step.seconds),
    )


def plain_dump(sandbox: Sandbox) -> Step:
    data = sandbox.out / "data.json"
    return sandbox.measure(
        sandbox.manage("dumpdata", *MODELS, "--natural-foreign", "-o", str(data)),
        sandbox.media(
            "czf", str(sandbox.out / "plain.tar.gz"), "-C", str(sandbox.out), "data.json"
        ),
    )


def plain_load(sandbox: Sandbox) -> Step:
    sandbox.reset()
    return sandbox.measure(
        sandbox.manage("loaddata", str(sandbox.out / "data.json")),
        sandbox.media("xzf", str(sandbox.out / "plain.tar.gz")),
    )


def dbbackup_dump(sandbox: Sandbox) -> Step:
    return sandbox.measure(
        sandbox.manage("dbbackup", "-z", "--noinput", "-q", "-o", "db.gz"),
        sandbox.manage("mediabackup", "-z", "--noinput", "-q", "-o", "media.tar.gz"),
    )


def dbbackup_load(sandbox: Sandbox) -> Step:
    """``dbrestore`` and ``mediarestore`` into a reset database, checked."""
    sandbox.reset()
    step = sandbox.measure(
        sandbox.manage("dbrestore", "-z", "--noinput", "-q", "-i", "db.gz"),
        sandbox.manage("mediarestore", "-z", "--noinput", "-q", "-i", "media.tar.gz"),
    )
    sandbox.check("dbrestore + mediarestore")
    return step


def pg_command(tool: str, *args: str) -> list[str]:
    """``tool`` of the PostgreSQL the bench started, with ``args``."""
    from tests.postgres import find_bindir, postgres_settings

    server = postgres_settings()
    connect = ["-h", server["HOST"], "-p", server["PORT"], "-U", server["USER"]]
    return [str(find_bindir() / tool), *connect, *args]


def pg_dump(sandbox: Sandbox) -> Step:
    dump = str(sandbox.out / "pg.dump")
    return sandbox.measure(pg_command("pg_dump", "-Fc", "-f", dump, sandbox.database_name))


def pg_restore(sandbox: Sandbox) -> Step:
    sandbox.reset(media=False)
    return sandbox.measure(
        pg_command(
            "pg_restore",
            "--clean",
            "--if-exists",
            "-d",
            sandbox.database_name,
            str(sandbox.out / "pg.dump"),
        )
    )


def table(results: list[Result]) -> str:
    lines = [
        "| step | time | rows/s | MB/s | peak RSS | against | its time | its rows/s "
        "| its peak RSS | diskette is |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        ours, theirs, rows = result.ours, result.theirs, result.rows
        its = ["", "", "", ""]
        if theirs:
            its = [
                f"{theirs.seconds:.1f} s",
                f"{rows / theirs.seconds:,.0f}",
                f"{theirs.rss_mb:.0f} MB",
                compared(ours, theirs),
            ]
        lines.append(
            f"| {result.step} | {ours.seconds:.1f} s | {rows / ours.seconds:,.0f} | "
            f"{result.megabytes / ours.seconds:.1f} | {ours.rss_mb:.0f} MB | "
            f"{result.against} | {' | '.join(its)} |"
        )
    return "\n".join(lines)


def compared(ours: Step, theirs: Step) -> str:
    """How much faster or slower diskette is: "14.76x faster", "3.70x slower"."""
    if theirs.seconds >= ours.seconds:
        return f"{theirs.seconds / ours.seconds:.2f}x faster"
    return f"{ours.seconds / theirs.seconds:.2f}x slower"


@dataclass(frozen=True)
class Target:
    """A goal of issue 14, read from this run's results."""

    steps: tuple[str, ...]
    #: "faster" (its time / ours, at least limit), "within" (ours / its time, at
    #: most limit), "under" (ours / its time, below limit), "rows/s" (at least
    #: limit), "rss" (peak MB, under limit).
    measure: str
    limit: float
    against: str = ""
    rows: int | None = None  # the size it is set at (None: any)
    database: str | None = None  # None: whichever measured it
    label: str = ""  # default: the step

    @property
    def text(self) -> str:
        what = self.label or self.steps[0]
        if self.measure == "faster" and self.limit == 1:
            text = f"{what} faster than {self.against}"
        elif self.measure == "faster":
            text = f"{what} at least {self.limit:g}x faster than {self.against}"
        elif self.measure == "within":
            text = f"{what} within {self.limit:g}x of {self.against}'s time"
        elif self.measure == "under":
            text = f"{what} under {self.limit:.2f}x the time of {self.against}"
        elif self.measure == "rows/s":
            text = f"{what} at least {self.limit:,.0f} rows/s"
        else:
            text = f"{what} peak RSS under {self.limit:.0f} MB"
        where = f"{self.database}: " if self.database else ""
        return where + text + (f" at {self.rows:,} rows" if self.rows else "")


def on_both(target: Target) -> list[Target]:
    return [replace(target, database=database) for database in ("sqlite", "postgres")]


TARGETS = [
    *on_both(Target((LOAD,), "faster", 10, PLAIN_LOAD, 200_000)),
    *on_both(Target((DUMP,), "faster", 10, PLAIN_DUMP, 200_000)),
    Target((DUMP_DATA,), "within", 5, PG_DUMP, 1_000_000, "postgres"),
    Target((LOAD_DATA,), "within", 5, PG_RESTORE, 1_000_000, "postgres"),
    Target((DUMP_DATA,), "rows/s", 80_000, "", 1_000_000, "sqlite"),
    Target((LOAD_DATA,), "rows/s", 50_000, "", 1_000_000, "sqlite"),
    Target((DUMP_MEDIA,), "faster", 2, TAR_DUMP),
    Target((LOAD_MEDIA,), "faster", 1.5, TAR_LOAD),
    *on_both(Target((DUMP, DUMP_DATA), "rss", 150, "", 1_000_000, label="dump")),
    *on_both(Target((LOAD, LOAD_DATA), "rss", 150, "", 1_000_000, label="load")),
    *on_both(Target((DUMP,), "faster", 1, DBBACKUP_DUMP)),
    Target((LOAD,), "within", 2, DBBACKUP_LOAD, database="postgres"),
    *on_both(Target((DUMP_ANONYMIZED,), "under", ANONYMIZE_LIMIT, NO_RULES)),
]


def verdict(target: Target, results: list[Result]) -> str:
    """``target`` met or missed (by how much), from the run at its size if there was one."""
    heading = f"- {target.text}: "
    found = [
        r
        for r in results
        if r.step in target.steps
        and target.database in (None, r.database)
        and (
            r.against == target.against
            if target.measure in ("faster", "within", "under")
            else True
        )
    ]
    if not found:
        return heading + "not measured in this run"
    rows = (
        target.rows
        if any(r.rows == target.rows for r in found)
        else max(r.rows for r in found)
    )
    found = [r for r in found if r.rows == rows]
    value, text = value_of(target, found)
    if target.measure == "rss":
        met = value < target.limit
    elif target.measure == "within":
        met = value <= target.limit
    elif target.measure == "under":
        met = value < target.limit
    else:
        met = value >= target.limit
    if met:
        state = "met"
    elif target.measure == "rss":
        state = f"missed by {value - target.limit:.0f} MB"
    else:
        state = f"missed by {abs(value / target.limit - 1):.0%}"
    measured = f" at {rows:,} rows" if not target.rows else ""
    if target.rows and rows != target.rows:
        measured, state = f" at {rows:,} rows, not {target.rows:,}", f"{state} at that size"
    return f"{heading}{text}{measured}, {state}"


def value_of(target: Target, found: list[Result]) -> tuple[float, str]:
    """The figure ``target`` is about, and how to print it."""
    first = found[0]
    if target.measure == "rss":
        peak = max(r.ours.rss_mb for r in found)
        return peak, f"{peak:.0f} MB"
    if target.measure == "rows/s":
        speed = first.rows / first.ours.seconds
        return speed, f"{speed:,.0f} rows/s"
    assert first.theirs is not None
    if target.measure == "faster":
        return first.theirs.seconds / first.ours.seconds, compared(first.ours, first.theirs)
    ratio = first.ours.seconds / first.theirs.seconds
    return ratio, f"{ratio:.2f}x its time"


def machine() -> str:
    import django

    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Django {django.get_version()}, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


def render(done: list[tuple[Pass, list[Result]]], options: argparse.Namespace) -> str:
    command = (
        f"inv bench --rows {options.rows} --media-mb {options.media_mb} --db {options.db} "
        f"--plain-rows {options.plain_rows} --repeat {options.repeat} "
        f"--memory-rows {options.memory_rows}"
    )
    parts = [
        f"# Benchmark results\n\n{machine()}\n\n`{command}`. rows: the objects of "
        "`demo_bulk_seed` (`shop_seed` adds about 1% more, of every model kind); load: "
        "the default `diskette_load`, no flag; data only: `--no-storages`, media only: "
        '`--no-data`; MB/s: diskette\'s archive over its time; "diskette is": the '
        "alternative's time over diskette's (faster), or diskette's over the "
        "alternative's (slower); media only: the fastest of "
        f"{options.repeat} alternating runs of each side; anonymized: the data alone "
        "dumped with anonymization rules against the same dump without rules, the "
        f"fastest of {ANONYMIZE_REPEAT} alternating runs of each.\n"
    ]
    for each, results in done:
        parts.append(
            f"## {each.database}, {each.rows:,} rows, {each.media_mb} MB of media: "
            f"{each.title}\n"
        )
        if each.notes:
            parts.append("\n".join(f"- {note}" for note in each.notes) + "\n")
        parts.append(table(results) + "\n")
    results = [result for _, results in done for result in results]
    parts.append(
        "## Targets\n\nEach from the run at its size; one at another size says so.\n\n"
        + "\n".join(verdict(target, results) for target in TARGETS)
        + "\n"
    )
    return "\n".join(parts)


def main() -> None:
    # The same options and help as ``inv bench`` (tasks.py).
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=200_000,
        help="rows of the comparison pass (default 200,000; 0: only the large pass)",
    )
    parser.add_argument(
        "--media-mb",
        type=int,
        default=256,
        help="megabytes of media of the comparison pass (default 256)",
    )
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres", "all"],
        default="all",
        help="sqlite, postgres or all (default): the databases of every pass",
    )
    parser.add_argument(
        "--plain-rows",
        type=int,
        default=200_000,
        help="largest size dumpdata/loaddata run at (default 200,000): above it, at this "
        "size, beside diskette, in a pass of their own; 0: never",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each media-only step, the fastest kept (default 3)",
    )
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=1_000_000,
        help="rows of the large pass, diskette's data alone (against pg_dump/pg_restore "
        "on PostgreSQL), run when above --rows (default 1,000,000; 0: never)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).with_name("results.md")
    )
    options = parser.parse_args()
    passes = plan(options)
    if not passes:
        parser.error("--rows 0 with --memory-rows 0 leaves nothing to run")
    if any(each.dbbackup for each in passes) and not importlib.util.find_spec("dbbackup"):
        parser.error("django-dbbackup is not installed: pip install -e '.[dev]'")
    for each in passes:
        print(f"plan: {each.database}, {each.rows:,} rows: {each.title}", flush=True)
    done: list[tuple[Pass, list[Result]]] = []
    with tempfile.TemporaryDirectory(prefix="diskette-bench-") as folder:
        for each in passes:
            done.append((each, run_pass(each, Path(folder))))
            # Written after each pass: a later failure keeps what is done.
            report = render(done, options)
            options.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
