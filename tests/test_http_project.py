"""Pulls over HTTP end to end: gunicorn serving a site, a checkout with a URL and a key.

The site (a copy of the sandbox, its registry a folder) includes
``diskette.urls`` and is served by gunicorn on 127.0.0.1; its operator
publishes a snapshot and makes keys with ``manage.py``. A second checkout
knows only the URL and a key (``DISKETTE_API_KEY``): ``diskette_load`` and
``inv pull-snapshot --url`` fetch, verify and load, through a relay that
breaks the connection halfway, and a revoked or expired key gets nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.databases import ON_SERVER, server_settings_body
from tests.projects import FOLDER_REGISTRY_SETTINGS, SandboxCopy, Templates
from tests.wsgiserver import CutProxy, WsgiServer, start_gunicorn

pytestmark = pytest.mark.subprocess

PATH = "/diskette/snapshots/latest/"


@pytest.fixture
def site(tmp_path, seeded: Templates) -> Iterator[tuple[SandboxCopy, WsgiServer]]:
    """A seeded site with a published snapshot, served by gunicorn."""
    site = seeded.copy(tmp_path / "site", books=12, seed=1)
    site.use_settings(
        site.write_settings(
            "settings_http",
            site.database + FOLDER_REGISTRY_SETTINGS,
        )
    )
    site.manage("diskette_dump", "--publish")
    server = start_gunicorn(site)
    yield site, server
    server.stop()


def new_key(site: SandboxCopy, *args: str) -> str:
    made = site.manage("diskette_apikey", "create", "--name", "laptop", "--json", *args)
    return json.loads(made.stdout)["key"]


def test_a_checkout_with_a_url_and_a_key_loads_the_latest_snapshot_through_a_cut(
    tmp_path, seeded, site
):
    production, server = site
    wanted = production.fingerprint()
    laptop = seeded.copy(tmp_path / "laptop", books=None)  # a fresh checkout, migrated
    laptop.env["DISKETTE_API_KEY"] = new_key(production)
    stored = next((production.root / "var" / "registry" / "archives").iterdir())
    relay = CutProxy(server.port, after=stored.stat().st_size // 2)
    try:
        loaded = laptop.manage("diskette_load", relay.url + PATH)
    finally:
        relay.close()
    # Asked for the key (401), sent it, cut once, resumed once.
    assert relay.cut == 1 and relay.connections == 3
    assert "resuming" in loaded.stderr + loaded.stdout
    assert laptop.fingerprint() == wanted
    assert not [p for p in laptop.root.iterdir() if ".tar.gz" in p.name]


def test_inv_pull_snapshot_from_a_url_resets_and_loads(tmp_path, seeded, site):
    production, server = site
    wanted = production.fingerprint()
    laptop = seeded.copy(tmp_path / "laptop", books=5, seed=2)
    (laptop.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    key = new_key(production)
    pulled = laptop.inv(
        "pull-snapshot", "--url", server.url + PATH, "--yes", env={"DISKETTE_API_KEY": key}
    )
    assert "Loaded " in pulled.stdout
    assert laptop.fingerprint() == wanted


@pytest.mark.parametrize("trouble", ["revoked", "expired", "wrong"])
def test_a_bad_key_gets_nothing_and_the_checkout_stays_as_it_was(
    tmp_path, seeded, site, trouble
):
    production, server = site
    laptop = seeded.copy(tmp_path / "laptop", books=5, seed=2)
    before = laptop.fingerprint()
    key = new_key(production, "--expires", "1m")
    if trouble == "revoked":
        production.manage("diskette_apikey", "revoke", "laptop")
    elif trouble == "expired":
        production.manage(
            "shell",
            "-c",
            "from diskette.models import ApiKey; "
            "from django.utils import timezone; ApiKey.objects.update(expires=timezone.now())",
        )
    else:
        key = key[:-1] + ("B" if key.endswith("A") else "A")  # never the key itself
    request = urllib.request.Request(
        server.url + PATH, headers={"Authorization": f"Bearer {key}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert "Content-Disposition" not in refused.value.headers
    assert list(json.loads(refused.value.read())) == ["error"]  # nothing but the reason

    laptop.env["DISKETTE_API_KEY"] = key
    failed = laptop.manage("diskette_load", server.url + PATH, "--overwrite", check=False)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        f"CommandError: downloading '{server.url}{PATH}' failed: HTTP 401 Unauthorized: "
        "this API key is not valid (unknown, expired or revoked): ask for a new one"
    )
    assert laptop.fingerprint() == before
    assert not [
        p for p in laptop.root.iterdir() if ".tar.gz" in p.name or ".part" in p.name
    ]


def test_onboarding_by_url_takes_a_fresh_clone_to_the_latest_snapshot(tmp_path, site):
    """scripts/onboard.sh --url on a checkout with no database, no media, no
    SSH and no registry settings: a URL and a key."""
    production, server = site
    clone = SandboxCopy.create(tmp_path / "new-developer")
    if ON_SERVER:  # a database not made yet
        clone.use_settings(clone.write_settings("settings_db", server_settings_body()))
    (clone.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    clone.as_fresh_clone("inv")  # the venv the script would make: this one
    clone.env["DISKETTE_API_KEY"] = new_key(production)

    result = clone.run("scripts/onboard.sh", "--url", server.url + PATH)

    assert result.stdout.strip().splitlines()[-1] == (
        f"=== Done: this checkout now has the data and media of {server.url}{PATH} ==="
    )
    assert clone.fingerprint() == production.fingerprint()
