"""What a load would change, told before it is done (``diskette_load --plan``).

A developer about to replace a day of local work wants to know what goes:
per model, the rows there are now and the rows the archive brings; per
storage, the files a load would add, change and remove, and the bytes. The
archive is verified first, as for ``--check``; nothing is written, and the
plan describes a load into a freshly reset database (``inv reset-and-load``,
a pull): the rows after are the archive's.

Files are compared by size, then, where sizes match, by sha256 against the
one the archive records: a file rewritten with the same size is a change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import DatabaseError

from .archive import Unpacked
from .definitions import dumpable_models
from .delta import Base
from .exceptions import ResetError
from .mediaindex import MediaIndex, regular_files
from .progress import human_size


@dataclass(frozen=True)
class ModelChange:
    """Rows of one model now, and after the load (``None``: not known here)."""

    model: str
    now: int | None
    after: int


@dataclass
class StorageChange:
    """What a load would do to one storage's folder."""

    storage: str
    folder: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    bytes_written: int = 0
    bytes_removed: int = 0


@dataclass
class Plan:
    models: list[ModelChange] = field(default_factory=list)
    storages: list[StorageChange] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "models": [asdict(m) for m in self.models],
            "storages": [asdict(s) for s in self.storages],
        }

    def lines(self) -> list[str]:
        """The plan as a person reads it: a table of models, a line per storage."""
        out = [f"{'MODEL':40} {'NOW':>10} {'AFTER':>10}"]
        for change in self.models:
            now = "?" if change.now is None else f"{change.now:,}"
            out.append(f"{change.model:40} {now:>10} {change.after:>10,}")
        for s in self.storages:
            out.append(
                f"{s.storage} ({s.folder}): {s.added} added, {s.changed} changed, "
                f"{s.removed} removed, {s.unchanged} unchanged; "
                f"{human_size(s.bytes_written)} written, {human_size(s.bytes_removed)} removed"
            )
        return out


def plan_load(
    unpacked: Unpacked,
    folders: dict[str, Path],
    using: str,
    *,
    with_data: bool = True,
    with_storages: bool = True,
    base: Base | None = None,
) -> Plan:
    """The plan of loading a verified archive into this project.

    :param folders: where each storage of the archive would be restored,
        by its path in the archive (the load's own mapping).
    :param base: what the storages hold where the archive is to be loaded,
        if not here (another host's :func:`~diskette.delta.have`, for a push).
    """
    plan = Plan()
    if with_data:
        plan.models = _models(unpacked.manifest, using)
    if with_storages:
        plan.storages = [
            _storage(
                unpacked, name, folders[name], None if base is None else base.get(name, {})
            )
            for name in unpacked.storages
            if name in folders
        ]
    return plan


def _models(manifest: dict[str, Any], using: str) -> list[ModelChange]:
    counts: dict[str, int] = {}
    for application in manifest.get("applications") or []:
        objects = application.get("objects") if isinstance(application, dict) else None
        for label, count in (objects or {}).items():
            if isinstance(label, str) and type(count) is int:
                counts[label] = counts.get(label, 0) + count
    return [
        ModelChange(label, _rows(label, using), after) for label, after in counts.items()
    ]


def rows_now(using: str) -> dict[str, int]:
    """Rows of every model a dump could hold, as they are here now: the
    "now" column of a plan whose "after" comes from another host."""
    try:
        return {
            model._meta.label_lower: int(model._base_manager.using(using).count())
            for model in dumpable_models(apps.get_models())
        }
    except DatabaseError as exc:
        raise ResetError(f"cannot count the rows here: {exc}") from exc


def _rows(label: str, using: str) -> int | None:
    try:
        model = apps.get_model(label)
        return int(model._base_manager.using(using).count())
    except (LookupError, ValueError, DatabaseError):
        return None  # a model unknown here: the load itself would refuse it


def _storage(
    unpacked: Unpacked, name: str, folder: Path, listed: dict[str, tuple[int, str]] | None
) -> StorageChange:
    """What loading storage ``name`` would do to ``folder``, or, given the
    ``listed`` files of that storage elsewhere, to them."""
    change = StorageChange(storage=name, folder=str(folder))
    incoming = unpacked.files(name)  # a delta's kept files too
    if listed is None:
        present = {path: status.st_size for path, status in regular_files(folder)}
        index = MediaIndex(folder)  # files unchanged since the last load are not read
        digest: Callable[[str], str] = index.sha256
    else:
        present = {path: size for path, (size, _) in listed.items()}
        digest = {path: sha256 for path, (_, sha256) in listed.items()}.__getitem__
    for relative, member in incoming.items():
        size = present.pop(relative, None)
        if size is None:
            change.added += 1
            change.bytes_written += member.size
        elif size != member.size or (member.sha256 and digest(relative) != member.sha256):
            change.changed += 1
            change.bytes_written += member.size
        else:
            change.unchanged += 1
    change.removed = len(present)
    change.bytes_removed = sum(present.values())
    return change
