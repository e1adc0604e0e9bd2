"""A push's machinery: an archive sent to the host, thinned to what it lacks.

``fab push-snapshot`` (:mod:`diskette.remote`) asks the host for the list of
its media, sends only the files it lacks (:func:`sending`), and loads the
upload there (:func:`push`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fabric import Connection
from invoke import Context, Exit

from .delta import Thinned, read_base, thin
from .exceptions import DisketteError
from .host import receiver, remote_tempdir, remove_remote
from .progress import human_size
from .ssh import on_host
from .tasks import (
    Project,
    confirm,
    emptied,
    expect,
    flags,
    media_list,
    print_plan,
    reset_and_load_archive,
    reset_target,
    run_json,
)
from .transfer import upload


def push(
    c: Connection,
    project: Project,
    archive: Path,
    *,
    yes: bool = False,
    force: bool = False,
    full: bool = False,
    **load: Any,
) -> dict[str, Any]:
    """Ask, upload ``archive`` to ``c``'s host, then reset its database and load it.

    What needs no upload comes first: the host's database is checked
    (``diskette_reset --check``: its guards, which database it is), and the
    question names the host and that database, so that a "no", a refusal or
    a missing terminal sends nothing. Once confirmed, the host lists its
    media, and what it has already is left out of what is sent (a delta,
    :func:`diskette.delta.thin`) unless ``full``; the archive is then
    uploaded, verified and loaded there without asking again.

    :param load: passed to :func:`diskette.tasks.reset_and_load_archive`.
    :returns: what it reports, with the ``sha256`` of the upload, its
        ``size`` and the files ``kept`` (and their bytes) the host had.
    """
    name = c.original_host
    with on_host(c):
        target = reset_target(c, project, force)
    confirm(f"Drop the {target.database} on {name} and load {archive} into it?", yes)
    folder = remote_tempdir(c)
    try:
        remote = f"{folder}/{archive.name}"
        with on_host(c):
            listed = None if full else media_list(c, project, host=name)
        with sending(archive, listed) as (path, thinned):
            with on_host(c):
                digest = upload(c, path, remote, receiver=receiver(project))
            size = path.stat().st_size
        print(f"Uploaded {archive} to {name}:{remote} (sha256 {digest})")
        if thinned is not None:
            print(
                f"{thinned.kept} files ({human_size(thinned.kept_bytes)}) were not sent: "
                f"{name} has them"
            )
        with on_host(c):
            # Answered above: yes=True only skips the question, not the checks.
            done = reset_and_load_archive(
                c,
                project,
                remote,
                host=name,
                name=archive.name,
                yes=True,
                force=force,
                **load,
            )
    finally:
        remove_remote(c, folder)
    return {
        **done,
        "archive": str(archive),
        "sha256": digest,
        "size": size,
        "kept": thinned.kept if thinned else 0,
        "kept_bytes": thinned.kept_bytes if thinned else 0,
    }


@contextlib.contextmanager
def sending(archive: Path, listed: str | None) -> Iterator[tuple[Path, Thinned | None]]:
    """The file to send for ``archive``: a delta of it against the host's
    ``listed`` media, made in a folder of its own beside it and removed
    after, or the archive itself where that leaves nothing out."""
    if listed is None:
        yield archive, None
        return
    base = read_base(io.BytesIO(listed.encode()), "the host's list of media")
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".diskette-push-") as work:
        try:
            made = thin(archive, base, Path(work) / archive.name)
        except DisketteError as exc:
            raise Exit(f"{archive} cannot be sent: {exc}", code=1) from exc
        yield (archive, None) if made is None else (made.path, made)


def plan_push(
    c: Connection, project: Project, archive: Path, *, force: bool
) -> dict[str, Any]:
    """What a push of ``archive`` would change on the host; nothing is written
    on either side (``diskette_reset --check --rows`` and ``diskette_index
    --read-only`` there, ``diskette_load --plan --base`` here).

    :returns: the plan, for ``--json``, as :func:`~diskette.tasks.print_plan` shows it.
    """
    name = c.original_host
    with on_host(c):
        target = run_json(
            c, project, "diskette_reset", "--check", "--rows", *flags(force=force)
        )
        listed = media_list(c, project, read_only=True, host=name)
    if listed is None:
        raise Exit(
            f"{name}: cannot plan without its list of media: update diskette there", code=1
        )
    here = Context(config=c.config)
    with tempfile.TemporaryDirectory(prefix="diskette-") as folder:
        there = Path(folder) / "media-there.json"
        there.write_text(listed)
        answer = run_json(
            here,
            Project.from_config(here),
            "diskette_load",
            str(archive),
            "--plan",
            "--base",
            str(there),
        )
    plan = expect(answer, "plan", dict, "diskette_load")
    now = expect(target, "rows", dict, "diskette_reset")
    after = {
        str(change.get("model")): int(change["after"])
        for change in plan.get("models") or []
        if isinstance(change, dict) and type(change.get("after")) is int
    }
    plan["models"] = emptied(now, after)
    print_plan(f"Pushing {archive} to {name} and loading it there", plan)
    return {
        "host": name,
        "archive": str(archive),
        "database": target.get("database"),
        "plan": plan,
        "dry_run": True,
    }
