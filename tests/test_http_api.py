"""The HTTP endpoints with API keys, through Django's test client and live server.

The registry is a ``FileSystemStorage`` folder here (one test reads ranges
from the loopback S3 server); what a download returns is compared with the
stored object's bytes. ``diskette_load http://...`` runs against
pytest-django's live server: a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management.base import CommandError
from django.utils import timezone

from demo.state import data_state
from diskette import apikeys
from diskette.exceptions import ApiKeyError
from diskette.models import ApiKey, Capture
from tests.conftest import run_command, tree_state, use_folder_registry
from tests.test_load_command import wipe_database

pytestmark = pytest.mark.django_db

API = "/diskette"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def registry(demo: Path, settings, tmp_path: Path) -> Path:
    """The demo project with a registry in a folder, and the endpoints at /diskette/."""
    return use_folder_registry(settings, tmp_path / "registry")


def publish(*args: str) -> dict:
    return json.loads(run_command("diskette_dump", "--publish", "--json", *args).stdout)[
        "snapshot"
    ]


def key(*scopes: str, expires: timedelta | None = None) -> str:
    when = timezone.now() + expires if expires is not None else None
    return apikeys.create("tester", list(scopes) or ["download"], when).key


def bearer(value: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def test_no_key_a_wrong_key_or_a_session_gets_401_and_nothing(
    client, admin_client, registry
):
    publish()
    for answer in (
        client.get(f"{API}/snapshots/latest/"),
        client.get(f"{API}/snapshots/latest/", **bearer("dsk_0123456789ab_" + "x" * 43)),
        client.get(f"{API}/snapshots/latest/", **bearer(key() + "x")),
        client.get(f"{API}/snapshots/latest/?key={key()}"),  # never read from a URL
        client.get(f"{API}/snapshots/latest/", HTTP_AUTHORIZATION=f"Basic {key()}"),
        admin_client.get(f"{API}/snapshots/"),  # a logged-in admin is not a key
    ):
        assert answer.status_code == 401
        assert answer["WWW-Authenticate"] == 'Bearer realm="diskette"'
        assert list(answer.json()) == ["error"]
        assert "Content-Disposition" not in answer


def test_expired_and_revoked_keys_get_401_and_a_key_needs_its_scope(client, registry):
    publish()
    expired = key(expires=timedelta(seconds=-1))
    assert client.get(f"{API}/snapshots/", **bearer(expired)).status_code == 401
    revoked = key()
    assert client.get(f"{API}/snapshots/", **bearer(revoked)).status_code == 200
    apikeys.revoke(revoked.split("_")[1])
    assert client.get(f"{API}/snapshots/", **bearer(revoked)).status_code == 401

    capture_only = key("capture")
    answer = client.get(f"{API}/snapshots/latest/", **bearer(capture_only))
    assert answer.status_code == 403
    assert "may not download" in answer.json()["error"]
    download_only = key("download")
    answer = client.post(f"{API}/captures/", **bearer(download_only))
    assert answer.status_code == 403
    assert not Capture.objects.exists()


def test_keys_are_stored_hashed_and_record_their_last_use(client, registry):
    made = apikeys.create("alice", "download", None)
    row = ApiKey.objects.get()
    stored = json.dumps(list(ApiKey.objects.values().get().values()), default=str)
    secret = made.key.removeprefix(f"dsk_{row.key_id}_")
    assert made.key not in stored and secret not in stored
    assert row.key_hash == hashlib.sha256(made.key.encode()).hexdigest()
    assert row.last_used is None
    client.get(f"{API}/snapshots/", **bearer(made.key))
    row.refresh_from_db()
    assert row.last_used is not None


def test_the_list_and_a_download_are_the_stored_snapshots(client, registry):
    first = publish()
    time.sleep(1.01)  # ids and times are to the second
    second = publish()
    download = key()
    listed = client.get(f"{API}/snapshots/", **bearer(download)).json()
    assert [s["id"] for s in listed["snapshots"]] == [second["id"], first["id"]]
    assert (
        listed["snapshots"][1]["url"] == f"http://testserver{API}/snapshots/{first['id']}/"
    )
    assert {k: v for k, v in listed["snapshots"][1].items() if k != "url"} == first

    stored = (registry / second["object"]).read_bytes()
    answer = client.get(f"{API}/snapshots/latest/", **bearer(download))
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content) == stored
    assert int(answer["Content-Length"]) == len(stored)
    assert answer["ETag"] == f'"{second["sha256"]}"'
    digest = base64.b64encode(hashlib.sha256(stored).digest()).decode()
    assert answer["Repr-Digest"] == f"sha-256=:{digest}:"
    assert answer["Content-Location"] == f"{API}/snapshots/{second['id']}/"
    assert answer["Accept-Ranges"] == "bytes"
    assert answer["Cache-Control"] == "no-store"

    older = client.get(f"{API}/snapshots/{first['id'][:-2]}/", **bearer(download))
    assert b"".join(older.streaming_content) == (registry / first["object"]).read_bytes()
    missing = client.get(f"{API}/snapshots/20000101T000000Z/", **bearer(download))
    assert missing.status_code == 404
    assert "holds no snapshot '20000101T000000Z'" in missing.json()["error"]


def test_a_range_resumes_and_a_changed_snapshot_is_sent_whole(client, registry):
    snapshot = publish()
    stored = (registry / snapshot["object"]).read_bytes()
    download = key()
    url = f"{API}/snapshots/{snapshot['id']}/"

    tail = client.get(url, HTTP_RANGE="bytes=1000-", **bearer(download))
    assert tail.status_code == 206
    assert b"".join(tail.streaming_content) == stored[1000:]
    assert tail["Content-Range"] == f"bytes 1000-{len(stored) - 1}/{len(stored)}"

    middle = client.get(url, HTTP_RANGE="bytes=10-19", **bearer(download))
    assert middle.status_code == 206
    assert middle["Content-Range"] == f"bytes 10-19/{len(stored)}"
    assert b"".join(middle.streaming_content) == stored[10:20]

    other = client.get(
        url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE='"abc"', **bearer(download)
    )
    assert other.status_code == 200
    assert b"".join(other.streaming_content) == stored

    past = client.get(url, HTTP_RANGE=f"bytes={len(stored)}-", **bearer(download))
    assert past.status_code == 416
    assert past["Content-Range"] == f"bytes */{len(stored)}"


def test_a_range_of_a_snapshot_on_s3(demo, settings, s3, bucket, client):
    settings.STORAGES = {
        **settings.STORAGES,
        "diskette": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3.options(bucket),
        },
    }
    snapshot = publish()
    stored = s3.objects(bucket)[snapshot["object"]]
    answer = client.get(
        f"{API}/snapshots/latest/", HTTP_RANGE="bytes=777-", **bearer(key())
    )
    assert answer.status_code == 206, answer.content
    assert b"".join(answer.streaming_content) == stored[777:]


def test_failed_attempts_are_throttled_per_client_but_a_valid_key_passes(
    client, registry, settings
):
    settings.DISKETTE_API_MAX_FAILURES = 3
    good = key()
    for _ in range(3):
        assert client.get(f"{API}/snapshots/", **bearer("nope")).status_code == 401
    wrong = good[:-1] + ("B" if good.endswith("A") else "A")  # never the good key
    refused = client.get(f"{API}/snapshots/", **bearer(wrong))
    assert refused.status_code == 429
    assert 590 <= int(refused["Retry-After"]) <= 600
    assert "too many failed attempts from 127.0.0.1" in refused.json()["error"]
    # A colleague behind the same address, with a good key, is not locked out;
    # a request without a key gets the challenge that makes a client send one.
    assert client.get(f"{API}/snapshots/", **bearer(good)).status_code == 200
    assert client.get(f"{API}/snapshots/").status_code == 401
    elsewhere = client.get(f"{API}/snapshots/", REMOTE_ADDR="127.0.0.2", **bearer("x"))
    assert elsewhere.status_code == 401


def test_raw_snapshots_are_kept_back_when_only_anonymized_ones_are_served(
    client, registry, settings
):
    raw = publish()
    download = key()
    settings.DISKETTE_API_ANONYMIZED_ONLY = True
    listed = client.get(f"{API}/snapshots/", **bearer(download)).json()
    assert listed["snapshots"] == [] and listed["anonymized_only"] is True
    for url in (f"{API}/snapshots/latest/", f"{API}/snapshots/{raw['id']}/"):
        answer = client.get(url, **bearer(download))
        assert answer.status_code == 404
        assert "no anonymized snapshot" in answer.json()["error"]


def test_rules_make_the_endpoints_serve_anonymized_snapshots_only(
    client, registry, settings
):
    raw = publish()
    settings.DISKETTE_ANONYMIZE = {"auth.User": {"email": "email"}}
    settings.DISKETTE_ANONYMIZE_SECRET = "s" * 32
    download = key()
    assert client.get(f"{API}/snapshots/latest/", **bearer(download)).status_code == 404
    masked = publish()
    assert masked["anonymized"] is True
    answer = client.get(f"{API}/snapshots/latest/", **bearer(download))
    assert answer["X-Diskette-Snapshot"] == masked["id"] != raw["id"]


@pytest.mark.django_db(transaction=True)
def test_a_capture_publishes_a_snapshot_and_only_one_runs_at_a_time(client, registry):
    capture = key("capture")
    Capture.objects.create(slot=Capture.RUNNING, requested_by="someone else")
    busy = client.post(f"{API}/captures/", **bearer(capture))
    assert busy.status_code == 409
    assert "a capture is running already" in busy.json()["error"]
    Capture.objects.update(slot=None, state=Capture.DONE)

    started = client.post(f"{API}/captures/", **bearer(capture))
    assert started.status_code == 202
    state = started.json()["capture"]
    assert state["state"] == "running" and state["requested_by"] == "API key tester"
    assert started["Location"] == f"{API}/captures/{state['id']}/"
    deadline = time.monotonic() + 120
    while state["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = client.get(started["Location"], **bearer(capture)).json()["capture"]
    assert state["state"] == "done", state
    assert client.get(f"{API}/captures/", **bearer(capture)).json()["capture"] == state
    listed = client.get(f"{API}/snapshots/", **bearer(key())).json()["snapshots"]
    assert [s["id"] for s in listed] == [state["snapshot"]]


@pytest.mark.django_db(transaction=True)
def test_a_capture_whose_process_died_is_marked_lost_and_frees_the_slot(client, registry):
    capture = key("capture")
    dead = Capture.objects.create(
        slot=Capture.RUNNING,
        requested_by="killed",
        heartbeat=timezone.now() - timedelta(minutes=5),
    )
    answer = client.get(f"{API}/captures/{dead.pk}/", **bearer(capture)).json()["capture"]
    assert answer["state"] == "lost" and "stopped" in answer["error"]
    assert client.post(f"{API}/captures/", **bearer(capture)).status_code == 202
    deadline = time.monotonic() + 120
    while Capture.objects.filter(slot=Capture.RUNNING).exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_failed_capture_says_why_in_one_line(client, registry, settings):
    settings.DISKETTE_REGISTRY_STORAGE = "nowhere"
    started = client.post(f"{API}/captures/", **bearer(key("capture")))
    url = started["Location"]
    deadline = time.monotonic() + 60
    state = started.json()["capture"]
    while state["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = client.get(url, **bearer(key("capture"))).json()["capture"]
    assert state["state"] == "failed"
    assert "nowhere" in state["error"] and "\n" not in state["error"]
    assert not Capture.objects.filter(slot=Capture.RUNNING).exists()


# The client: diskette_load over HTTP, against a real server on loopback.


@pytest.mark.django_db(transaction=True)
def test_diskette_load_fetches_verifies_and_loads_the_latest_snapshot(
    live_server, registry, demo, monkeypatch
):
    for excluded in ("cache/generated.txt", "public/thumbnails/generated.txt"):
        (demo / "var" / "media" / excluded).unlink()  # never archived: not restored
    data, media = data_state(), tree_state(demo / "var" / "media")
    publish()
    wipe_database()  # diskette's own tables too: the key is made after
    monkeypatch.setenv("DISKETTE_API_KEY", key())
    assert data_state() != data
    run_command(
        "diskette_load", f"{live_server.url}/diskette/snapshots/latest/", "--overwrite"
    )
    assert data_state() == data
    assert tree_state(demo / "var" / "media") == media
    assert not list(demo.glob("*.tar.gz*"))  # the download is removed once loaded


@pytest.mark.django_db(transaction=True)
def test_a_bad_key_loads_nothing_and_says_why(live_server, registry, demo, monkeypatch):
    publish()
    data = data_state()
    monkeypatch.setenv("DISKETTE_API_KEY", key(expires=timedelta(seconds=-1)))
    with pytest.raises(CommandError) as failure:
        run_command("diskette_load", f"{live_server.url}/diskette/snapshots/latest/")
    message = str(failure.value)
    assert "HTTP 401" in message and "not valid (unknown, expired or revoked)" in message
    assert data_state() == data
    assert not [p for p in demo.iterdir() if "download" in p.name or p.suffix == ".part"]


@pytest.mark.django_db(transaction=True)
def test_an_encrypted_snapshot_is_decrypted_with_this_machines_key(
    live_server, registry, demo, monkeypatch, settings, tmp_path
):
    pytest.importorskip("pyrage")
    identity = tmp_path / "age-key.txt"
    settings.DISKETTE_REGISTRY_IDENTITY = str(identity)
    public = json.loads(run_command("diskette_snapshots", "--new-key", "--json").stdout)
    settings.DISKETTE_REGISTRY_RECIPIENTS = [public["recipient"]]
    snapshot = publish()
    assert snapshot["recipients"]
    data = data_state()
    wipe_database()
    monkeypatch.setenv("DISKETTE_API_KEY", key())
    run_command(
        "diskette_load", f"{live_server.url}/diskette/snapshots/latest/", "--overwrite"
    )
    assert data_state() == data


@pytest.mark.django_db(transaction=True)
def test_a_load_without_a_key_says_which_setting_holds_it(
    live_server, registry, monkeypatch
):
    publish()
    monkeypatch.delenv("DISKETTE_API_KEY", raising=False)
    with pytest.raises(CommandError) as failure:
        run_command("diskette_load", f"{live_server.url}/diskette/snapshots/latest/")
    assert str(failure.value).endswith(
        "HTTP 401 Unauthorized: an API key is needed: send it as 'Authorization: "
        "Bearer <key>' (manage.py diskette_apikey create makes one) "
        "(set DISKETTE_API_KEY to your key)"
    )


# manage.py diskette_apikey


def test_the_command_shows_a_key_once_and_revokes_by_key_id_or_name(registry):
    made = json.loads(
        run_command(
            "diskette_apikey", "create", "--name", "ci", "--scope", "capture", "--json"
        ).stdout
    )
    assert made["scopes"] == ["capture"] and made["state"] == "active"
    assert apikeys.authenticate(made["key"], "capture", "t", 0, 60).key_id == made["key_id"]
    twin = apikeys.create("ci", "download", None).row
    text = run_command("diskette_apikey", "create", "--name", made["key_id"]).stdout
    assert "Copy it now" in text and apikeys.KEY_PATTERN.search(text)

    listed = run_command("diskette_apikey", "list", "--json").stdout
    assert made["key"] not in listed and "key_hash" not in listed
    assert len(json.loads(listed)["keys"]) == 3

    # A key id first: the key named like it stays.
    revoked = json.loads(
        run_command("diskette_apikey", "revoke", made["key_id"], "--json").stdout
    )["revoked"]
    assert [k["key_id"] for k in revoked] == [made["key_id"]]
    assert ApiKey.objects.get(name=made["key_id"]).state() == "active"
    run_command("diskette_apikey", "revoke", "ci")
    twin.refresh_from_db()
    assert twin.state() == "revoked"
    with pytest.raises(CommandError, match="no active API key is named 'ci'"):
        run_command("diskette_apikey", "revoke", "ci")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--expires", "5y"), "expiry '5y' is not a duration such as 90m, 12h, 30d or 2w"),
        (("--expires", "99999d"), "(at most ten years)"),
        ((), "name the key: --name alice"),
    ],
)
def test_the_command_refuses_what_would_make_a_bad_key(args, message):
    named = ("--name", "x") if args else ()
    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("diskette_apikey", "create", *named, *args)
    assert not ApiKey.objects.exists()


# What a hostile client or a broken registry gets.


def test_an_object_gone_from_the_registry_is_a_503_in_one_line(client, registry):
    snapshot = publish()
    (registry / snapshot["object"]).unlink()  # a prune racing the download
    answer = client.get(f"{API}/snapshots/{snapshot['id']}/", **bearer(key()))
    assert answer.status_code == 503
    assert snapshot["object"] in answer.json()["error"]
    assert "\n" not in answer.json()["error"]
    gone = client.get(f"{API}/snapshots/20000101T000000Z-abcdef/", **bearer(key()))
    assert gone.status_code == 404


def test_a_range_ending_before_it_starts_is_no_range(client, registry):
    snapshot = publish()
    answer = client.get(
        f"{API}/snapshots/{snapshot['id']}/", HTTP_RANGE="bytes=100-50", **bearer(key())
    )
    assert answer.status_code == 200
    assert (
        b"".join(answer.streaming_content) == (registry / snapshot["object"]).read_bytes()
    )


def test_no_capture_where_its_snapshot_could_never_be_served(client, registry, settings):
    settings.DISKETTE_API_ANONYMIZED_ONLY = True
    answer = client.post(f"{API}/captures/", **bearer(key("capture")))
    assert answer.status_code == 409
    assert "set DISKETTE_ANONYMIZE first" in answer.json()["error"]
    assert not Capture.objects.exists()


def test_the_failure_window_ends_when_it_says(registry):
    start = timezone.now()

    def attempt(seconds: int) -> int:
        at = start + timedelta(seconds=seconds)
        with pytest.raises(ApiKeyError) as refused:
            apikeys.authenticate("bad", "download", "10.0.0.1", 3, 600, now=at)
        return refused.value.status

    # The third failure, later, does not move the end of the window.
    assert [attempt(s) for s in (0, 0, 300, 599)] == [401, 401, 401, 429]
    assert attempt(601) == 401


def test_head_says_what_get_would_send_and_sends_nothing(client, registry):
    snapshot = publish()
    head = client.head(f"{API}/snapshots/latest/", **bearer(key()))
    assert head.status_code == 200
    assert int(head["Content-Length"]) == snapshot["size"]
    assert head["ETag"] == f'"{snapshot["sha256"]}"'
    assert b"".join(head.streaming_content) == b""
    (registry / snapshot["object"]).unlink()
    gone = client.head(f"{API}/snapshots/latest/", **bearer(key()))
    assert gone.status_code == 503


def test_a_wrong_setting_is_a_503_naming_it(client, registry, settings):
    settings.DISKETTE_API_MAX_FAILURES = -1
    answer = client.get(f"{API}/snapshots/", **bearer(key()))
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("DISKETTE_API_MAX_FAILURES must be")


@pytest.mark.django_db(transaction=True)
def test_no_answer_of_the_endpoints_is_kept_by_a_cache(client, registry):
    capture = key("capture")
    started = client.post(f"{API}/captures/", **bearer(capture))
    answers = [
        started,
        client.get(started["Location"], **bearer(capture)),
        client.get(f"{API}/captures/", **bearer(capture)),
        client.get(f"{API}/snapshots/", **bearer(key())),
    ]
    assert [a["Cache-Control"] for a in answers] == ["no-store"] * 4
    deadline = time.monotonic() + 120
    while Capture.objects.filter(slot=Capture.RUNNING).exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
