# The HTTP endpoints and the admin (issue 17): API keys, captures, and the
# registry's snapshots as an admin page (no table).

import uuid

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("diskette", "0001_load"),
    ]

    operations = [
        migrations.CreateModel(
            name="Snapshot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
            ],
            options={
                "managed": False,
                "default_permissions": ("view", "add", "delete"),
            },
        ),
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "name",
                    models.CharField(help_text="Who or what uses the key.", max_length=100),
                ),
                ("key_id", models.CharField(editable=False, max_length=16, unique=True)),
                ("key_hash", models.CharField(editable=False, max_length=64)),
                (
                    "scopes",
                    models.CharField(
                        help_text="Space-separated: download (list and fetch snapshots), capture (start a new snapshot).",
                        max_length=100,
                    ),
                ),
                (
                    "created",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                (
                    "expires",
                    models.DateTimeField(
                        blank=True, help_text="Empty: the key never expires.", null=True
                    ),
                ),
                ("revoked", models.DateTimeField(blank=True, editable=False, null=True)),
                ("last_used", models.DateTimeField(blank=True, editable=False, null=True)),
            ],
            options={
                "verbose_name": "API key",
                "ordering": ["-created"],
            },
        ),
        migrations.CreateModel(
            name="Capture",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "slot",
                    models.CharField(editable=False, max_length=8, null=True, unique=True),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("running", "running"),
                            ("done", "done"),
                            ("failed", "failed"),
                            ("lost", "lost"),
                        ],
                        default="running",
                        max_length=8,
                    ),
                ),
                ("requested_by", models.CharField(max_length=150)),
                ("started", models.DateTimeField(default=django.utils.timezone.now)),
                ("heartbeat", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished", models.DateTimeField(blank=True, null=True)),
                ("snapshot", models.CharField(blank=True, max_length=40)),
                ("error", models.TextField(blank=True)),
            ],
            options={
                "ordering": ["-started"],
            },
        ),
    ]
