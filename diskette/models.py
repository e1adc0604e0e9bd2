"""diskette's own tables: loads, API keys and captures.

**Load**: one row per load that committed.

A load writes its row inside the very transaction that writes the archive's
data, so the row exists exactly when that data does. The on-disk journal of a
storage swap (:mod:`diskette.journal`) names the load; after a crash, the
next diskette command looks the row up to know whether the data committed,
and so whether to finish the media swap or to undo it. No file on disk can
tell that: only the database knows whether its transaction committed.

**ApiKey** and **Capture** serve the HTTP endpoints (:mod:`diskette.views`):
the keys that may download or capture snapshots, stored hashed, and the
captures started through them. **Snapshot** has no table: it gives the
registry's snapshots a page and permissions in the admin.

diskette's own models are never dumped or loaded (see
:func:`diskette.definitions.dumpable_models`): API keys never leave the
host that issued them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.utils import timezone


class Load(models.Model):
    """A load that committed: which archive, and when."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    archive = models.CharField(max_length=255, help_text="The archive's file name.")
    loaded = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-loaded"]
        verbose_name = "load"

    def __str__(self) -> str:
        return f"{self.archive} ({self.loaded:%Y-%m-%d %H:%M})"


class ApiKey(models.Model):
    """A key for the HTTP endpoints, of which only a hash is kept.

    The key itself (``dsk_<key_id>_<secret>``) is shown once, when created
    (:func:`diskette.apikeys.create`). ``key_id`` finds the row; the sha256
    of the whole key is then compared in constant time. A key is usable
    while it is neither revoked nor expired, for its scopes only.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100, help_text="Who or what uses the key.")
    key_id = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.CharField(
        max_length=100,
        help_text="Space-separated: download (list and fetch snapshots), "
        "capture (start a new snapshot).",
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires = models.DateTimeField(
        null=True, blank=True, help_text="Empty: the key never expires."
    )
    revoked = models.DateTimeField(null=True, blank=True, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (dsk_{self.key_id}_...)"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= (now or timezone.now()):
            return "expired"
        return "active"


class Capture(models.Model):
    """A snapshot being taken through the endpoints or the admin, or one taken.

    ``slot`` is ``"running"`` while the capture runs and ``NULL`` after: a
    unique column, so a second capture cannot start on any database, from
    any process. ``heartbeat`` is renewed while it runs; one that stopped
    (the process was killed) marks the capture lost and frees the slot.
    """

    RUNNING, DONE, FAILED, LOST = "running", "done", "failed", "lost"
    STATES = [(s, s) for s in (RUNNING, DONE, FAILED, LOST)]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slot = models.CharField(max_length=8, null=True, unique=True, editable=False)
    state = models.CharField(max_length=8, choices=STATES, default=RUNNING)
    requested_by = models.CharField(max_length=150)
    started = models.DateTimeField(default=timezone.now)
    heartbeat = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)
    snapshot = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started"]

    def __str__(self) -> str:
        return f"capture {self.id} ({self.state})"


class Snapshot(models.Model):
    """The registry's snapshots in the admin: no table, no rows.

    The admin lists them from the registry (:mod:`diskette.admin`); the
    model only gives that page its URL and its permissions: *view* lists
    and downloads, *add* captures, *delete* removes.
    """

    class Meta:
        managed = False
        default_permissions = ("view", "add", "delete")
