# The name is not "0001_initial": emencia's diskette 0.6, whose app label is
# also "diskette", recorded that name, and a database migrated by it would
# take this table as created already.
import uuid

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Load",
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
                    "archive",
                    models.CharField(help_text="The archive's file name.", max_length=255),
                ),
                ("loaded", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"verbose_name": "load", "ordering": ["-loaded"]},
        ),
    ]
