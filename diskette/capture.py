"""Captures: a snapshot published to the registry at a request over HTTP.

A capture is ``diskette_dump --publish`` run on a thread of the process
that received the request, so that it needs no worker queue: on Heroku,
Fly or Kubernetes the web process is all there is. Its state lives in the
database (:class:`diskette.models.Capture`), which every process of the
site shares:

- one capture at a time: the row of a running capture holds the unique
  ``slot``, so a second ``INSERT`` fails on any database, from any process;
- a capture whose process dies (a deploy, an out-of-memory kill) stops
  renewing its ``heartbeat``; the first look at the captures two minutes
  after marks it lost and frees the slot. Its archive was never published: the registry only
  lists a snapshot once its index is written, the publish's last step.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .exceptions import CaptureError
from .models import Capture

#: How often a running capture says it is alive, and after how long without
#: a word it is taken for dead.
HEARTBEAT = timedelta(seconds=15)
LOST_AFTER = timedelta(minutes=2)
LOST = "the process running it stopped (a restart or a kill); capture again"


def start(requested_by: str) -> Capture:
    """Start a capture on a thread of its own.

    :raises CaptureError: a capture is running already.
    """
    expire_lost()
    try:
        with transaction.atomic():
            capture = Capture.objects.create(
                slot=Capture.RUNNING, requested_by=requested_by[:150]
            )
    except IntegrityError:
        running = Capture.objects.filter(slot=Capture.RUNNING).first()
        since = ""
        if running is not None:  # it may have ended since the insert failed
            since = f" (capture {running.id}, started {running.started:%H:%M:%S} UTC)"
        raise CaptureError(
            f"a capture is running already{since}: wait for it to end"
        ) from None
    # Once the row is committed (ATOMIC_REQUESTS): the thread reads it.
    transaction.on_commit(
        threading.Thread(
            target=run,
            args=(capture.pk,),
            name=f"diskette-capture-{capture.pk}",
            daemon=True,
        ).start
    )
    return capture


def run(capture_id: object) -> None:
    """Dump and publish; record the snapshot, or the one-line error.

    Runs on its own thread, with its own database connection, which it
    closes at the end: threads do not go through a request's clean-up.
    """
    alive = threading.Event()
    beat = threading.Thread(target=_beat, args=(capture_id, alive), daemon=True)
    beat.start()
    folder = Path(tempfile.mkdtemp(prefix="diskette-capture-"))
    state, snapshot, error = Capture.FAILED, "", ""
    try:
        output = StringIO()
        call_command(
            "diskette_dump",
            publish=True,
            json=True,
            destination=folder,
            stdout=output,
            stderr=StringIO(),
        )
        answer = json.loads(output.getvalue())
        state, snapshot = Capture.DONE, answer["snapshot"]["id"]
    except CommandError as exc:
        error = str(exc)
    except Exception as exc:  # a bug must still free the slot, and say what it was
        error = f"the capture failed unexpectedly: {exc!r}"
    finally:
        alive.set()
        beat.join()
        shutil.rmtree(folder, ignore_errors=True)
        Capture.objects.filter(pk=capture_id).update(
            state=state,
            slot=None,
            snapshot=snapshot,
            error=error,
            finished=timezone.now(),
        )
        connection.close()


def _beat(capture_id: object, stop: threading.Event) -> None:
    try:
        while not stop.wait(HEARTBEAT.total_seconds()):
            Capture.objects.filter(pk=capture_id, slot=Capture.RUNNING).update(
                heartbeat=timezone.now()
            )
    finally:
        connection.close()


def expire_lost(now: datetime | None = None) -> int:
    """Mark running captures whose heartbeat stopped as lost; free the slot."""
    now = now or timezone.now()
    return Capture.objects.filter(
        slot=Capture.RUNNING, heartbeat__lt=now - LOST_AFTER
    ).update(state=Capture.LOST, slot=None, error=LOST, finished=now)


def latest() -> Capture | None:
    """The most recent capture, after marking lost ones."""
    expire_lost()
    return Capture.objects.order_by("-started").first()
