"""The HTTP endpoints: the registry's snapshots for hosts without SSH.

A project includes :mod:`diskette.urls` under a path of its choice. Every
endpoint takes an API key (:mod:`diskette.apikeys`) as ``Authorization:
Bearer <key>``, and only that: never a session cookie, so no page of
another site can make a logged-in browser download a snapshot, and no key
ever sits in a URL, where logs and proxies would keep it.

The snapshots served are those of the registry (:mod:`diskette.registry`,
``DISKETTE_REGISTRY_STORAGE``), streamed from its storage with ``Range``
support so that a cut download resumes. Each answer states the stored
object's sha256 (``Repr-Digest``, RFC 9530, and the ``ETag``), which the
client checks before it loads anything.

Errors are JSON ``{"error": "<one line>"}`` with the status that says it:
401 no or a bad key, 403 a key without the scope, 404 no such snapshot,
409 a capture already running, 416 a range past the end, 429 too many
failed attempts, 503 the registry's storage failing, an object missing, or
a wrong setting. A 401 carries the challenge (:data:`CHALLENGE`) that makes
diskette's client send its key: it sends it nowhere else.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from . import apikeys, capture
from .anonymize.rules import configured
from .conf import DisketteSettings, get_settings
from .exceptions import (
    ApiKeyError,
    CaptureError,
    DisketteError,
    RegistryError,
)
from .files import BLOCK_SIZE
from .models import ApiKey, Capture
from .objectstorage import open_stream, translated
from .registry import Registry, Snapshot

#: ``bytes=START-`` or ``bytes=START-END``: the one range a download resumes with.
RANGE = re.compile(r"bytes=(\d{1,16})-(\d{1,16})?")

View = Callable[..., HttpResponse]
#: What a 401 answers: diskette's clients send their key to this challenge only.
CHALLENGE = 'Bearer realm="diskette"'


def answer(data: dict[str, Any], status: int = 200) -> JsonResponse:
    """A JSON answer no cache keeps: it lists production's snapshots."""
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    return response


def error(message: str, status: int, headers: dict[str, str] | None = None) -> JsonResponse:
    """``{"error": message}``: one line a client can show as it is."""
    response = answer({"error": message}, status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def with_key(scope: str) -> Callable[[View], View]:
    """Let a view run only for a valid key with ``scope``, passed as ``key``.

    The settings are read here too, so that a wrong one is a 503 naming it,
    not a 500: the client sees the site's fault, in one line.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                settings = get_settings()
                key = apikeys.authenticate(
                    apikeys.bearer(request.headers.get("Authorization")),
                    scope,
                    client=request.META.get("REMOTE_ADDR", ""),
                    max_failures=settings.api_max_failures,
                    window=settings.api_failure_window,
                )
                return view(request, *args, key=key, settings=settings, **kwargs)
            except ApiKeyError as exc:
                headers = {
                    401: {"WWW-Authenticate": CHALLENGE},
                    429: {"Retry-After": str(exc.retry_after)},
                }.get(exc.status)
                return error(str(exc), exc.status, headers)
            except DisketteError as exc:  # the registry's storage, or the settings
                return error(str(exc), 503)

        return csrf_exempt(guarded)

    return decorate


def anonymized_only(settings: DisketteSettings) -> bool:
    """Whether raw snapshots are kept from the endpoints: as the setting
    says, else whenever the project has anonymization rules."""
    if settings.api_anonymized_only is not None:
        return settings.api_anonymized_only
    return configured()


def describe(request: HttpRequest, snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot's index, and the absolute URL that downloads it: a client
    needs no knowledge of where the endpoints are included."""
    url = reverse("diskette:snapshot", args=[snapshot.id])
    return {**snapshot.as_index(), "url": request.build_absolute_uri(url)}


@require_GET
@with_key("download")
def snapshot_list(
    request: HttpRequest, key: ApiKey, settings: DisketteSettings
) -> HttpResponse:
    """The snapshots this key may download, newest first."""
    listing = Registry.from_settings(settings).listing()
    only = anonymized_only(settings)
    snapshots = [s for s in listing.snapshots if s.anonymized or not only]
    return answer(
        {
            "snapshots": [describe(request, s) for s in snapshots],
            "anonymized_only": only,
            "damaged": len(listing.damaged),
        }
    )


@require_http_methods(["GET", "HEAD"])
@with_key("download")
def snapshot_download(
    request: HttpRequest, reference: str, key: ApiKey, settings: DisketteSettings
) -> HttpResponse:
    """The stored object of a snapshot (``latest`` or an id), from ``Range``."""
    registry = Registry.from_settings(settings)
    try:
        snapshot = registry.find(reference, anonymized_only=anonymized_only(settings))
    except RegistryError as exc:
        return error(str(exc), 404)
    etag = f'"{snapshot.sha256}"'
    start, end = 0, snapshot.size - 1
    wanted = RANGE.fullmatch(request.headers.get("Range", "").strip())
    if wanted and wanted[2] and int(wanted[2]) < int(wanted[1]):
        wanted = None  # not a range (RFC 9110): the whole body
    if wanted and request.headers.get("If-Range", etag) == etag:
        start = int(wanted[1])
        end = min(int(wanted[2]), end) if wanted[2] else end
        if start > end:
            return error(
                f"range {request.headers['Range']!r} is past the end of snapshot "
                f"{snapshot.id} ({snapshot.size} bytes)",
                416,
                {"Content-Range": f"bytes */{snapshot.size}"},
            )
    length = end - start + 1
    body: Iterator[bytes] = iter(())
    try:  # opened now: an object gone or refused is an answer, not a cut body
        if request.method != "HEAD":
            body = opened(stream_snapshot(registry, snapshot, start, length))
        elif not registry.has(snapshot):
            raise RegistryError(
                f"snapshot {snapshot.id}'s object {snapshot.object!r} is missing from "
                f"storage {registry.alias!r} (removed meanwhile?)"
            )
    except DisketteError as exc:
        return error(str(exc), 503)
    response = StreamingHttpResponse(
        body,
        status=206 if (start, end) != (0, snapshot.size - 1) else 200,
        content_type="application/octet-stream",
    )
    response["Content-Length"] = str(length)
    if response.status_code == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{snapshot.size}"
    digest = base64.b64encode(bytes.fromhex(snapshot.sha256)).decode()
    name = snapshot.object.rsplit("/", 1)[-1]
    for header, value in {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Repr-Digest": f"sha-256=:{digest}:",
        "Content-Disposition": f'attachment; filename="diskette-snapshot-{name}"',
        "Content-Location": reverse("diskette:snapshot", args=[snapshot.id]),
        "Cache-Control": "no-store",
        "X-Diskette-Snapshot": snapshot.id,
        "X-Diskette-Archive-Sha256": snapshot.archive_sha256,
        "X-Diskette-Anonymized": str(snapshot.anonymized).lower(),
    }.items():
        response[header] = value
    if snapshot.encrypted:
        response["X-Diskette-Encryption"] = "age"
    return response


def stream_snapshot(
    registry: Registry, snapshot: Snapshot, start: int, length: int
) -> Iterator[bytes]:
    """``length`` bytes of the object from ``start``.

    The answer's status and headers are sent already when this runs: a
    storage failing now can only cut the body short, which the client sees
    (fewer bytes than ``Content-Length``) and resumes from.
    """
    with (
        translated(registry.alias, f"read {snapshot.object!r}"),
        open_stream(registry.storage, snapshot.object, start) as source,
    ):
        while length > 0:
            block = source.read(min(BLOCK_SIZE, length))
            if not block:
                return
            length -= len(block)
            yield block


def opened(stream: Iterator[bytes]) -> Iterator[bytes]:
    """``stream`` with its first block read already, so that opening the
    object fails here, before the answer's status is sent; closing the
    result (the server does, even when the client left) closes ``stream``."""
    first = next(stream, b"")

    def chained() -> Iterator[bytes]:
        try:
            if first:
                yield first
            yield from stream
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    return chained()


def describe_capture(request: HttpRequest, run: Capture) -> dict[str, Any]:
    """A capture as a client polls it: its state, and its snapshot or error."""
    url = reverse("diskette:capture", args=[run.pk])
    return {
        "id": str(run.pk),
        "state": run.state,
        "requested_by": run.requested_by,
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "snapshot": run.snapshot or None,
        "error": run.error or None,
        "url": request.build_absolute_uri(url),
    }


@require_http_methods(["GET", "POST"])
@with_key("capture")
def captures(request: HttpRequest, key: ApiKey, settings: DisketteSettings) -> HttpResponse:
    """POST: start a capture (202), or 409 while one runs. GET: the latest one."""
    if request.method == "POST":
        if anonymized_only(settings) and not configured():
            return error(
                "this site serves anonymized snapshots only (DISKETTE_API_ANONYMIZED_ONLY) "
                "and has no anonymization rules: a capture would publish a snapshot "
                "nobody may download; set DISKETTE_ANONYMIZE first",
                409,
            )
        try:
            run = capture.start(requested_by=f"API key {key.name}")
        except CaptureError as exc:
            return error(str(exc), 409)
        response = answer({"capture": describe_capture(request, run)}, status=202)
        response["Location"] = reverse("diskette:capture", args=[run.pk])
        return response
    latest = capture.latest()
    return answer({"capture": describe_capture(request, latest) if latest else None})


@require_GET
@with_key("capture")
def capture_state(
    request: HttpRequest, capture_id: str, key: ApiKey, settings: DisketteSettings
) -> HttpResponse:
    """The state of one capture."""
    capture.expire_lost()
    run = Capture.objects.filter(pk=capture_id).first()
    if run is None:
        return error(f"no capture {capture_id}", 404)
    return answer({"capture": describe_capture(request, run)})
