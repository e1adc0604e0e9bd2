"""diskette's admin pages through Django's test client (:mod:`diskette.admin`).

API keys are made with the add form, shown once and stored hashed; the
revoke action makes them useless. The snapshots page lists the registry (a
``FileSystemStorage`` under ``tmp_path``), downloads the stored object,
deletes index and object, and captures; the model's permissions decide who
may do which. A storage that fails is one line on the page, never a 500.
"""

from __future__ import annotations

import html
import json
import re
import time
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diskette import apikeys
from diskette.exceptions import ApiKeyError
from diskette.models import ApiKey, Capture
from diskette.progress import human_size
from tests.conftest import run_command, use_folder_registry

KEY = re.compile(r"dsk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
SNAPSHOTS = "admin:diskette_snapshot_changelist"


# Helpers ----------------------------------------------------------------------


@pytest.fixture
def registry(demo: Path, settings, tmp_path: Path) -> Path:
    """The demo project with an empty registry in a folder; its path."""
    return use_folder_registry(settings, tmp_path / "registry")


def publish() -> dict:
    answer = json.loads(run_command("diskette_dump", "--publish", "--json").stdout)
    return answer["snapshot"]


def authenticate(key: str, scope: str = "download") -> ApiKey:
    return apikeys.authenticate(key, scope, client="test", max_failures=0, window=60)


def shown_messages(response) -> list[tuple[str, str]]:
    """The admin's messages on a page: (level, text)."""
    found = re.search(
        r'<ul class="messagelist">(.*?)</ul>', response.content.decode(), re.S
    )
    if not found:
        return []
    return [
        (level, html.unescape(re.sub(r"<[^>]+>", "", text)))
        for level, text in re.findall(r'<li class="(\w+)">(.*?)</li>', found[1], re.S)
    ]


class Rows(HTMLParser):
    """The snapshot rows of the list: ``{id: {field: (text, title)}}``."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, tuple[str, str | None]]] = {}
        self.row: dict[str, tuple[str, str | None]] | None = None
        self.cell: tuple[str, str | None] | None = None
        self.text = ""
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr" and (attributes.get("id") or "").startswith("snapshot-"):
            self.row = self.rows.setdefault(attributes["id"].removeprefix("snapshot-"), {})
        elif tag == "td" and self.row is not None:
            self.cell = (
                (attributes.get("class") or "").removeprefix("field-"),
                attributes.get("title"),
            )
            self.text = ""

    def handle_data(self, data: str) -> None:
        self.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.row is not None and self.cell is not None:
            name, title = self.cell
            self.row[name] = (" ".join(self.text.split()), title)
            self.cell = None
        elif tag == "tr":
            self.row = None


def listed(client: Client) -> dict[str, dict[str, tuple[str, str | None]]]:
    response = client.get(reverse(SNAPSHOTS))
    assert response.status_code == 200
    return Rows(response.content.decode()).rows


def staff(*codenames: str) -> Client:
    """A client logged in as a staff member with only these diskette permissions."""
    user = User.objects.create_user("staff", password="secret", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="diskette", codename__in=codenames
        )
    )
    client = Client()
    client.force_login(user)
    return client


# API keys ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(admin_client):
    before = timezone.now()
    response = admin_client.post(
        reverse("admin:diskette_apikey_add"),
        {"name": "laptop of Ada", "scopes": ["download"], "expiry": "30d"},
    )
    assert response.status_code == 200  # the answer to the form shows it: no redirect
    page = response.content.decode()
    shown = re.findall(r'<code class="diskette-new-key">([^<]+)</code>', page)
    assert len(shown) == 1 and KEY.fullmatch(shown[0]), page
    key = shown[0]
    assert "it is not stored, and will never be shown again" in page
    assert "no-store" in response["Cache-Control"]
    assert not [c for c in response.cookies.values() if key in c.value]  # never a cookie

    row = ApiKey.objects.get()
    assert (row.name, row.scopes) == ("laptop of Ada", "download")
    assert before + timedelta(days=30) <= row.expires <= timezone.now() + timedelta(days=30)
    assert row.key_hash == apikeys.digest(key)
    secret = key.removeprefix(f"{apikeys.PREFIX}{row.key_id}_")  # may hold "_" itself
    stored = [str(getattr(row, f.attname)) for f in ApiKey._meta.concrete_fields]
    assert not [value for value in stored if secret in value]
    assert authenticate(key).pk == row.pk
    with pytest.raises(ApiKeyError) as refused:
        authenticate(key, "capture")
    assert refused.value.status == 403

    for page in (
        reverse("admin:diskette_apikey_changelist"),
        reverse("admin:diskette_apikey_change", args=[row.pk]),
    ):
        content = admin_client.get(page).content.decode()
        assert row.key_id in content  # the key's public part tells it apart
        assert key not in content and secret not in content
        assert row.key_hash not in content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": "no scope", "expiry": "90d"}, "scopes"),
        ({"name": "bad scope", "scopes": ["upload"], "expiry": "90d"}, "scopes"),
        ({"name": "no date", "scopes": ["capture"], "expiry": "date"}, "expires_on"),
        (
            {
                "name": "past date",
                "scopes": ["capture"],
                "expiry": "date",
                "expires_on_0": "2001-01-01",
                "expires_on_1": "10:00:00",
            },
            "expires_on",
        ),
        ({"name": "   ", "scopes": ["capture"], "expiry": "never"}, "name"),
    ],
)
def test_the_add_form_refuses_what_would_make_a_bad_key(admin_client, form, field):
    response = admin_client.post(reverse("admin:diskette_apikey_add"), form)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()
    assert not KEY.search(response.content.decode())


@pytest.mark.django_db
def test_a_key_can_expire_on_a_date_or_never(admin_client):
    when = (timezone.localtime() + timedelta(days=10)).replace(second=0, microsecond=0)
    for name, expiry in (("dated", "date"), ("forever", "never")):
        admin_client.post(
            reverse("admin:diskette_apikey_add"),
            {
                "name": name,
                "scopes": ["download", "capture"],
                "expiry": expiry,
                "expires_on_0": when.strftime("%Y-%m-%d"),
                "expires_on_1": when.strftime("%H:%M:%S"),
            },
        )
    assert ApiKey.objects.get(name="dated").expires == when
    assert ApiKey.objects.get(name="forever").expires is None
    assert ApiKey.objects.get(name="forever").scopes == "download capture"


@pytest.mark.django_db
def test_revoking_selected_keys_refuses_them_and_only_them(admin_client):
    revoked, kept = (
        apikeys.create("ci", ["download"], None),
        apikeys.create("ops", ["download"], None),
    )
    response = admin_client.post(
        reverse("admin:diskette_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [revoked.row.pk]},
        follow=True,
    )
    assert ("success", "Revoked 1 API key(s): ci.") in shown_messages(response)
    with pytest.raises(ApiKeyError) as refused:
        authenticate(revoked.key)
    assert refused.value.status == 401
    assert authenticate(kept.key).pk == kept.row.pk
    states = dict(ApiKey.objects.values_list("name", "revoked"))
    assert states["ci"] is not None and states["ops"] is None
    page = admin_client.get(
        reverse("admin:diskette_apikey_changelist"), {"state": "revoked"}
    )
    assert list(page.context["cl"].result_list) == [revoked.row]


@pytest.mark.django_db
def test_only_the_name_of_a_key_can_change(admin_client):
    made = apikeys.create("ci", ["download"], None)
    admin_client.post(
        reverse("admin:diskette_apikey_change", args=[made.row.pk]),
        {
            "name": "ci runner",
            "scopes": "download capture",
            "expires": "",
            "key_hash": "0" * 64,
        },
    )
    row = ApiKey.objects.get()
    assert (row.name, row.scopes, row.expires) == ("ci runner", "download", None)
    assert row.key_hash == apikeys.digest(made.key)


# Captures ---------------------------------------------------------------------


@pytest.mark.django_db
def test_captures_are_listed_read_only(admin_client):
    failed = Capture.objects.create(
        state=Capture.FAILED, requested_by="API key ci", error="the disk is full"
    )
    page = admin_client.get(reverse("admin:diskette_capture_changelist"))
    assert page.status_code == 200
    assert "the disk is full" in page.content.decode()
    assert admin_client.get(reverse("admin:diskette_capture_add")).status_code == 403
    change = reverse("admin:diskette_capture_change", args=[failed.pk])
    admin_client.post(change, {"state": "done", "requested_by": "someone else"})
    failed.refresh_from_db()
    assert (failed.state, failed.requested_by) == (Capture.FAILED, "API key ci")


# Snapshots --------------------------------------------------------------------


@pytest.mark.django_db
def test_the_snapshots_page_lists_the_registry_newest_first(
    admin_client, registry, settings
):
    plain = publish()
    settings.DISKETTE_ANONYMIZE = {"auth.User": {"email": "email", "password": "password"}}
    settings.DISKETTE_ANONYMIZE_SECRET = "a secret for the test"
    anonymized = publish()
    assert (plain["anonymized"], anonymized["anonymized"]) == (False, True)

    rows = listed(admin_client)
    newest_first = sorted([plain, anonymized], key=lambda s: (s["created"], s["id"]))[::-1]
    assert list(rows) == [s["id"] for s in newest_first]
    for snapshot in (plain, anonymized):
        row = rows[snapshot["id"]]
        stored = registry / snapshot["object"]
        assert row["size"] == (
            human_size(stored.stat().st_size),
            f"{stored.stat().st_size} bytes",
        )
        assert row["sha256"][1] == snapshot["sha256"]
        assert row["sha256"][0] == snapshot["sha256"][:12] + "…"
        assert row["anonymized"][0] == ("yes" if snapshot["anonymized"] else "no")
        assert row["encrypted"][0] == "no"
        assert "Download" in row["actions"][0] and "Delete" in row["actions"][0]


@pytest.mark.django_db
def test_a_download_is_the_stored_object_byte_for_byte(admin_client, registry):
    snapshot = publish()
    response = admin_client.get(
        reverse("admin:diskette_snapshot_download", args=[snapshot["id"]])
    )
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert body == (registry / snapshot["object"]).read_bytes()
    assert response["Content-Length"] == str(len(body))
    name = snapshot["object"].rsplit("/", 1)[1]
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="diskette-snapshot-{name}"'
    )


@pytest.mark.django_db
def test_a_missing_object_is_a_message_not_a_cut_download(admin_client, registry):
    snapshot = publish()
    (registry / snapshot["object"]).unlink()
    response = admin_client.get(
        reverse("admin:diskette_snapshot_download", args=[snapshot["id"]]), follow=True
    )
    assert response.redirect_chain == [(reverse(SNAPSHOTS), 302)]
    [(level, text)] = shown_messages(response)
    assert level == "error" and snapshot["object"] in text and "does not exist" in text


@pytest.mark.django_db
@pytest.mark.parametrize("reference", ["latest", "unknown", "a prefix", "not an id"])
def test_only_a_listed_id_downloads(admin_client, registry, reference):
    snapshot_id = publish()["id"]
    reference = {
        "unknown": "20200101T000000Z-abcdef",
        "a prefix": snapshot_id[:12],  # the registry's find() would take it
        "not an id": "index",
    }.get(reference, reference)
    response = admin_client.get(
        reverse("admin:diskette_snapshot_download", args=[reference]), follow=True
    )
    assert not response.streaming
    [(level, text)] = shown_messages(response)
    assert level == "error" and "holds no snapshot" in text


@pytest.mark.django_db
def test_delete_asks_then_removes_index_and_object(admin_client, registry):
    kept, removed = publish(), publish()
    url = reverse("admin:diskette_snapshot_delete", args=[removed["id"]])
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert removed["id"] in confirm.content.decode()
    index = registry / "index" / f"{removed['id']}.json"
    assert (
        index.is_file() and (registry / removed["object"]).is_file()
    )  # a GET removes nothing

    response = admin_client.post(url, follow=True)
    assert (
        "success",
        f"Snapshot {removed['id']} was deleted from storage 'diskette'.",
    ) in shown_messages(response)
    assert not index.exists() and not (registry / removed["object"]).exists()
    assert list(Rows(response.content.decode()).rows) == [kept["id"]]
    assert (registry / kept["object"]).is_file()


@pytest.mark.django_db
def test_damaged_index_objects_are_warnings_beside_the_list(admin_client, registry):
    snapshot = publish()
    damaged = registry / "index" / "20200101T000000Z-abcdef.json"
    damaged.write_text("{not json")
    response = admin_client.get(reverse(SNAPSHOTS))
    assert list(Rows(response.content.decode()).rows) == [snapshot["id"]]
    assert shown_messages(response) == [
        (
            "warning",
            "Index object 'index/20200101T000000Z-abcdef.json' is damaged: not JSON",
        )
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["a file as location", "an unknown alias"])
def test_a_failing_registry_is_one_line_on_the_page(
    admin_client, registry, settings, fault
):
    if fault == "a file as location":
        registry.parent.mkdir(parents=True, exist_ok=True)
        registry.write_text("not a folder")
        expected = "Storage 'diskette' (STORAGES['diskette']): cannot list its snapshots"
    else:
        settings.DISKETTE_REGISTRY_STORAGE = "nowhere"
        expected = "DISKETTE_REGISTRY_STORAGE names storage 'nowhere'"
    response = admin_client.get(reverse(SNAPSHOTS))
    assert response.status_code == 200
    [(level, text)] = shown_messages(response)
    assert level == "error" and text.startswith(expected)
    assert "\n" not in text
    assert "Traceback" not in response.content.decode()
    assert Rows(response.content.decode()).rows == {}


@pytest.mark.django_db
def test_permissions_decide_who_lists_downloads_captures_and_deletes(registry):
    snapshot = publish()
    snapshot_id = snapshot["id"]
    urls = {
        "list": reverse(SNAPSHOTS),
        "download": reverse("admin:diskette_snapshot_download", args=[snapshot_id]),
        "delete": reverse("admin:diskette_snapshot_delete", args=[snapshot_id]),
        "capture": reverse("admin:diskette_snapshot_capture"),
    }
    nobody = staff()
    assert nobody.get(urls["list"]).status_code == 403
    assert nobody.get(urls["download"]).status_code == 403
    assert "Snapshots" not in nobody.get(reverse("admin:index")).content.decode()

    User.objects.filter(username="staff").delete()
    viewer = staff("view_snapshot")
    page = viewer.get(urls["list"])
    assert page.status_code == 200
    assert list(Rows(page.content.decode()).rows) == [snapshot_id]
    assert "Capture now" not in page.content.decode()
    assert urls["delete"] not in page.content.decode()
    assert urls["list"] in viewer.get(reverse("admin:index")).content.decode()
    download = viewer.get(urls["download"])
    assert (
        b"".join(download.streaming_content) == (registry / snapshot["object"]).read_bytes()
    )
    assert viewer.get(urls["delete"]).status_code == 403
    assert viewer.post(urls["delete"]).status_code == 403
    assert viewer.post(urls["capture"]).status_code == 403
    assert not Capture.objects.exists()
    assert (registry / snapshot["object"]).is_file()

    User.objects.filter(username="staff").delete()
    deleter = staff("view_snapshot", "delete_snapshot")
    assert urls["delete"] in deleter.get(urls["list"]).content.decode()
    assert deleter.post(urls["delete"]).status_code == 302
    assert not (registry / snapshot["object"]).exists()


@pytest.mark.django_db
def test_a_logged_out_visitor_is_sent_to_the_login_page(client, registry):
    snapshot = publish()
    for url in (
        reverse(SNAPSHOTS),
        reverse("admin:diskette_snapshot_download", args=[snapshot["id"]]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.django_db
def test_capture_refuses_a_get_and_a_second_capture(admin_client, registry):
    url = reverse("admin:diskette_snapshot_capture")
    assert admin_client.get(url).status_code == 405
    running = Capture.objects.create(slot=Capture.RUNNING, requested_by="API key ci")
    response = admin_client.post(url, follow=True)
    [(level, text)] = shown_messages(response)
    assert level == "warning" and text.startswith("A capture is running already")
    assert list(Capture.objects.all()) == [running]
    content = response.content.decode()
    assert 'http-equiv="refresh"' in content
    assert re.search(r'value="Capture now"\s+disabled', content)


@pytest.mark.django_db(transaction=True)
def test_capture_now_publishes_a_snapshot_that_the_page_then_lists(admin_client, registry):
    assert listed(admin_client) == {}
    response = admin_client.post(reverse("admin:diskette_snapshot_capture"), follow=True)
    [(level, text)] = shown_messages(response)
    assert level == "success" and "started" in text
    run = Capture.objects.get()
    assert run.requested_by == "admin admin"
    deadline = time.monotonic() + 120
    while run.state == Capture.RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
        run.refresh_from_db()
    assert (run.state, run.error) == (Capture.DONE, "")
    assert list(listed(admin_client)) == [run.snapshot]
    assert (registry / "index" / f"{run.snapshot}.json").is_file()
    page = admin_client.get(reverse(SNAPSHOTS)).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert f"snapshot <code>{run.snapshot}</code>" in page


@pytest.mark.django_db
def test_a_key_gives_no_more_than_its_maker_may_do(registry):
    maker = staff("add_apikey", "view_snapshot")
    url = reverse("admin:diskette_apikey_add")
    refused = maker.post(url, {"name": "ci", "scopes": ["capture"], "expiry": "30d"})
    assert refused.status_code == 200
    assert "it needs the permission diskette.add_snapshot" in refused.content.decode()
    assert not ApiKey.objects.exists()
    made = maker.post(url, {"name": "laptop", "scopes": ["download"], "expiry": "30d"})
    assert KEY.search(made.content.decode())
    assert ApiKey.objects.get().scopes == "download"


@pytest.mark.django_db
def test_keys_are_revoked_never_deleted(admin_client):
    row = apikeys.create("old", "download", None).row
    delete = reverse("admin:diskette_apikey_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    listing = admin_client.get(reverse("admin:diskette_apikey_changelist"))
    assert 'value="delete_selected"' not in listing.content.decode()
    assert ApiKey.objects.filter(pk=row.pk).exists()
