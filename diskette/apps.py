"""Django application configuration for diskette."""

from __future__ import annotations

from django.apps import AppConfig


class DisketteConfig(AppConfig):
    name = "diskette"
    verbose_name = "Diskette"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
