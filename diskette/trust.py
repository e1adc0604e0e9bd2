"""What an archive may write here: the local project decides, never the archive.

An archive, whoever made it, is untrusted input. Its manifest names storages
and its data files carry objects of any model; a hostile or compromised host
could name the project's own code folder as a "storage", or slip a superuser
into a data file. So a load restores only:

- storages the local ``DISKETTE_STORAGES`` declares, by the same path below
  the base path (:func:`declared_storages`);
- objects of models the local definitions cover (``DISKETTE_APPS``, or every
  model for a whole-database snapshot the tasks made themselves), and, where
  the manifest lists the models of a data file, only those
  (:class:`ModelPolicy`);
- data as plain JSON or JSON Lines, read an object at a time with a bound
  on each object's size (:func:`json_objects`), so no file inflates whole
  into memory.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.apps import apps

try:  # the fast extra: JSON Lines parsed five times faster
    import orjson
except ImportError:  # pragma: no cover - the standard library does it all
    orjson = None  # type: ignore[assignment]

from .definitions import Definition, dumpable_models, load_definitions
from .exceptions import UntrustedDataError

#: The largest serialized object a data file may hold: a row with a large
#: text field fits, a line meant to exhaust memory does not.
OBJECT_LIMIT = 64 * 1024 * 1024
READ_SIZE = 1024 * 1024


def declared_storages(paths: Iterable[str | Path], base: Path) -> dict[str, Path]:
    """Storage paths relative to ``base`` (as archives name them), from settings.

    Unlike :func:`diskette.storages.resolve_storages`, a storage need not
    exist yet: a fresh checkout has no media folder, and a load creates it.
    A storage outside ``base`` cannot be named by an archive at all.
    """
    base = Path(os.path.abspath(base))
    declared: dict[str, Path] = {}
    for raw in paths:
        path = Path(os.path.abspath(base / raw))
        if path.is_relative_to(base) and path != base:
            declared[path.relative_to(base).as_posix()] = path
    return declared


@dataclass(frozen=True)
class ModelPolicy:
    """Which models a load may write objects of, by lower-case label.

    :param allowed: the models the local definitions cover.
    :param source: where ``allowed`` comes from, for the error message.
    """

    allowed: frozenset[str]
    source: str
    skip_unknown: bool = False

    @classmethod
    def from_definitions(
        cls, raw: Any, whole_database: bool = False, skip_unknown: bool = False
    ) -> ModelPolicy:
        """The models of ``DISKETTE_APPS`` (``raw``), or every model diskette
        dumps when ``whole_database``.

        :param skip_unknown: let objects of models this project does not have
            through, for ``--ignorenonexistent`` to skip as ``loaddata`` does.
        """
        if whole_database:
            # Every model diskette dumps at all, as diskette_dump --everything
            # writes them.
            labels = {m._meta.label_lower for m in dumpable_models(apps.get_models())}
            return cls(frozenset(labels), "--everything", skip_unknown)
        definitions = load_definitions(raw)
        return cls(frozenset(_labels(definitions)), "DISKETTE_APPS", skip_unknown)

    def check(self, data: Any, member: str, listed: frozenset[str] | None) -> None:
        """Refuse the serialized object ``data`` of data file ``member``, unless
        its model may be written here.

        :param listed: the models the manifest lists for that file, if it does.
        :raises UntrustedDataError: naming the model, the file and the fix.
        """
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            raise UntrustedDataError(
                f"data '{member}' holds something that is not an object"
            )
        label = data["model"]
        key = label.lower()
        if key not in self.allowed and self.skip_unknown and not _installed(label):
            return  # skipped by the loader, as loaddata --ignorenonexistent does
        if key not in self.allowed:
            raise UntrustedDataError(
                f"data '{member}' holds {label} objects, a model {self.source} does not "
                "cover here: add it to a definition if this project should load it"
            )
        if listed is not None and key not in listed:
            raise UntrustedDataError(
                f"data '{member}' holds {label} objects, which the archive's manifest "
                "does not list for that file: the archive is not what it claims"
            )


def listed_models(manifest: dict[str, Any], member: str) -> frozenset[str] | None:
    """The models the manifest lists for data file ``member``, if it lists them."""
    for application in manifest.get("applications") or []:
        if isinstance(application, dict) and application.get("data") == member:
            objects = application.get("objects")
            if isinstance(objects, dict):
                return frozenset(str(label).lower() for label in objects)
    return None


def json_objects(path: Path, member: str) -> Iterator[tuple[int, Any]]:
    """The objects of a ``.jsonl`` or ``.json`` data file, with their position.

    Positions are line numbers in JSON Lines and object numbers in a JSON
    array. Memory holds one object at a time, whatever the file's size, and
    no object over :data:`OBJECT_LIMIT` bytes is read whole.

    :raises UntrustedDataError: for an object over the limit, nesting too
        deep for the parser, or a file that is not JSON.
    """
    with open(path, "rb") as source:
        try:
            if path.suffix == ".jsonl":
                yield from _lines(source, member)
            else:
                yield from _array(source, member)
        except RecursionError:
            raise UntrustedDataError(f"data '{member}' is nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise UntrustedDataError(f"data '{member}' is not valid JSON: {exc}") from exc


#: Each byte of a line mapped to "0" if a digit, "a" if not: a line holds 19
#: digits in a row (an integer orjson could turn into a float) if its
#: translation holds :data:`_LONG_NUMBER`, found five times faster than by
#: a regular expression.
_DIGITS = bytes(ord("0") if chr(i).isdigit() and i < 128 else ord("a") for i in range(256))
_LONG_NUMBER = b"0" * 19


def parse(line: bytes) -> Any:
    """One JSON value: through orjson where installed, else, and for what
    orjson reads otherwise, the standard library.

    orjson refuses ``NaN`` (which Python's ``json`` writes for a float
    field) as well as what is not JSON: those lines are read again by
    ``json``, which takes the first and reports the second as it always
    did. It reads an integer past 64 bits as a float, silently: a line with
    19 digits in a row goes to ``json`` at once. The values are the same
    either way.
    """
    if orjson is not None and _LONG_NUMBER not in line.translate(_DIGITS):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line)


def _lines(source: BinaryIO, member: str) -> Iterator[tuple[int, Any]]:
    number = 0
    while line := source.readline(OBJECT_LIMIT + 1):
        number += 1
        if len(line) > OBJECT_LIMIT:
            raise _too_large(member, number)
        if line.strip():
            yield number, parse(line)


def _array(source: BinaryIO, member: str) -> Iterator[tuple[int, Any]]:
    """Objects of a JSON array, decoded one by one as the file is read.

    An object cut by the end of what was read is decoded again once more
    is read; each read is as large as what waits, so a large object costs
    a few decodes, not one a megabyte.
    """
    decoder, utf8 = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")()
    buffer, position, number, at_end = "", 0, 0, False
    waiting = 0  # bytes read since the last object was decoded

    def fill() -> bool:
        nonlocal buffer, position, at_end, waiting
        chunk = source.read(max(READ_SIZE, waiting))
        waiting += len(chunk)
        if waiting > OBJECT_LIMIT + READ_SIZE:
            raise _too_large(member, number + 1)
        buffer, position = buffer[position:] + utf8.decode(chunk, final=not chunk), 0
        at_end = not chunk
        return bool(chunk)

    def skip_blanks() -> str:
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n":
                position += 1
            if position < len(buffer) or not fill():
                return buffer[position : position + 1]

    if skip_blanks() == "":
        return  # an empty file: no objects
    if skip_blanks() != "[":
        raise ValueError("a .json data file must hold an array of objects")
    position += 1
    expect_value = True
    while True:
        head = skip_blanks()
        if head == "]" and (number == 0 or not expect_value):
            return
        if not expect_value:
            if head != ",":
                raise ValueError(f"expected ',' or ']' after object {number}")
            position += 1
            expect_value = True
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buffer, position)
                break
            except json.JSONDecodeError:
                if at_end or not fill():
                    raise
        number += 1
        position, expect_value, waiting = end, False, 0
        yield number, value


def _too_large(member: str, number: int) -> UntrustedDataError:
    return UntrustedDataError(
        f"data '{member}' object {number} is over {OBJECT_LIMIT // 2**20} MiB, "
        "more than diskette reads as one object"
    )


def _installed(label: str) -> bool:
    try:
        apps.get_model(label)
    except (LookupError, ValueError):
        return False
    return True


def _labels(definitions: Iterable[Definition]) -> set[str]:
    """The definitions' models, and their auto-created many-to-many tables,
    which ``dumpdata`` of diskette 0.6 wrote as objects of their own."""
    labels = set()
    for model in (model for d in definitions for model in d.models):
        labels.add(model._meta.label_lower)
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through
            if through._meta.auto_created:
                labels.add(through._meta.label_lower)
    return labels
