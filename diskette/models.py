"""diskette's own table: one row per load that committed.

A load writes its row inside the very transaction that writes the archive's
data, so the row exists exactly when that data does. The on-disk journal of a
storage swap (:mod:`diskette.journal`) names the load; after a crash, the
next diskette command looks the row up to know whether the data committed,
and so whether to finish the media swap or to undo it. No file on disk can
tell that: only the database knows whether its transaction committed.

diskette's own models are never dumped or loaded (see
:func:`diskette.definitions.dumpable_models`).
"""

from __future__ import annotations

import uuid

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
