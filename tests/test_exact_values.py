"""Every value comes back exactly: times keep their microseconds.

Django's JSON encoder cuts ``07:08:09.123456`` to ``07:08:09.123``; a
snapshot that did so would silently change data, and rows a few
microseconds apart under a unique constraint would collide on load.
"""

from __future__ import annotations

import datetime
import json

import pytest
from django.contrib.auth.models import User

from diskette.data import ExactJSONEncoder
from tests.conftest import run_command
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db(transaction=True)

UTC = datetime.timezone.utc
MOMENTS = {
    "user0": datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    "user1": datetime.datetime(2026, 1, 2, 3, 4, 5, 123457, tzinfo=UTC),  # 1 µs later
    "user2": datetime.datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
}


def test_the_encoder_keeps_microseconds_and_otherwise_writes_as_django_does():
    encode = ExactJSONEncoder().encode
    assert encode(MOMENTS["user0"]) == '"2026-01-02T03:04:05.123456Z"'
    assert encode(datetime.datetime(2026, 1, 2, 3, 4, 5)) == '"2026-01-02T03:04:05"'
    assert encode(datetime.time(7, 8, 9, 123456)) == '"07:08:09.123456"'
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert encode(datetime.datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=plus_two)) == (
        '"2026-01-02T03:04:05.000007+02:00"'
    )
    assert encode(datetime.timedelta(microseconds=1)) == '"P0DT00H00M00.000001S"'


@pytest.mark.parametrize("loaddata", [True, False], ids=["loaddata", "batched"])
def test_timestamps_round_trip_to_the_microsecond(demo, loaddata):
    for username, moment in MOMENTS.items():
        User.objects.filter(username=username).update(date_joined=moment, last_login=moment)
    before = {u.username: (u.date_joined, u.last_login) for u in User.objects.all()}
    assert all(moment.microsecond % 1000 for moment in MOMENTS.values())  # not ms
    answer = json.loads(run_command("diskette_dump", "--json", "--no-storages").stdout)
    wipe_database()
    run_command("diskette_load", answer["archive"], *(["--loaddata"] if loaddata else []))
    after = {u.username: (u.date_joined, u.last_login) for u in User.objects.all()}
    assert after == before
