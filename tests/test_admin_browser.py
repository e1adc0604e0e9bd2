"""diskette's admin pages in a real browser: Debian's Chromium through Selenium.

What :mod:`tests.test_admin` checks with the test client, done as a person
would, against pytest-django's live server: log in through the admin's
form, make an API key and copy it from the page, revoke it with the action;
on the snapshots page, capture one and watch it finish, then delete one
through the confirmation page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from diskette import apikeys
from diskette.exceptions import ApiKeyError
from diskette.models import ApiKey, Capture
from tests.conftest import run_command, use_folder_registry

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"needs Debian's Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
    "apt-get install chromium chromium-driver",
)

PASSWORD = "a password for the browser"
#: How long a page may take to show what a step waits for.
WAIT = 20
#: How long a capture of the demo project may take (it takes a few seconds).
CAPTURE_WAIT = 180


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module: it takes a while to start."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1024",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def registry(demo: Path, settings, tmp_path: Path) -> Path:
    """The demo project with a registry in a folder (a ``FileSystemStorage``)."""
    return use_folder_registry(settings, tmp_path / "registry")


@pytest.fixture
def admin(browser: WebDriver, live_server) -> WebDriver:
    """The browser, logged in as a new superuser through the login form."""
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys("root")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    WebDriverWait(browser, WAIT).until(
        ec.presence_of_element_located((By.ID, "user-tools"))
    )
    assert "root" in browser.find_element(By.ID, "user-tools").text.lower()
    return browser


def messages(browser: WebDriver) -> list[tuple[str, str]]:
    """The admin's messages on the page: (level, text)."""
    return [
        (item.get_attribute("class") or "", item.text)
        for item in browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li")
    ]


def rows(browser: WebDriver) -> list[str]:
    """The snapshot ids the list shows, in its order."""
    return [
        row.get_attribute("id").removeprefix("snapshot-")
        for row in browser.find_elements(
            By.CSS_SELECTOR, "#result_list tr.diskette-snapshot"
        )
    ]


def capture_state(browser: WebDriver) -> str:
    """The state of the latest capture, as the snapshots page tells it."""
    return browser.find_element(By.CSS_SELECTOR, ".diskette-capture-state strong").text


def authenticate(key: str) -> ApiKey:
    return apikeys.authenticate(
        key, "download", client="browser", max_failures=0, window=60
    )


def test_a_key_made_in_the_browser_works_until_it_is_revoked(admin, live_server):
    admin.get(f"{live_server.url}/admin/")
    admin.find_element(By.LINK_TEXT, "API keys").click()
    admin.find_element(By.CSS_SELECTOR, ".object-tools a.addlink").click()
    admin.find_element(By.ID, "id_name").send_keys("laptop of Grace")
    admin.find_element(By.CSS_SELECTOR, "input[name=scopes][value=download]").click()
    admin.find_element(By.CSS_SELECTOR, "input[name=expiry][value='30d']").click()
    admin.find_element(By.NAME, "_save").click()

    shown = WebDriverWait(admin, WAIT).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "code.diskette-new-key"))
    )
    key = shown.text
    assert apikeys.KEY_PATTERN.fullmatch(key), messages(admin)
    row = authenticate(key)
    assert (row.name, row.scopes) == ("laptop of Grace", "download")
    assert row.key_hash == apikeys.digest(key) and row.expires is not None

    admin.find_element(By.LINK_TEXT, "Done").click()  # shown once: never again
    assert key not in admin.page_source
    assert admin.find_elements(By.CSS_SELECTOR, "code.diskette-new-key") == []

    admin.find_element(By.CSS_SELECTOR, f"input.action-select[value='{row.pk}']").click()
    Select(admin.find_element(By.NAME, "action")).select_by_value("revoke_selected")
    admin.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    WebDriverWait(admin, WAIT).until(lambda b: messages(b))
    assert ("success", "Revoked 1 API key(s): laptop of Grace.") in messages(admin)
    with pytest.raises(ApiKeyError):
        authenticate(key)
    assert ApiKey.objects.get().state() == "revoked"


def test_capture_and_delete_snapshots_in_the_browser(admin, live_server, registry):
    published = json.loads(run_command("diskette_dump", "--publish", "--json").stdout)
    first = published["snapshot"]
    admin.get(f"{live_server.url}/admin/")
    admin.find_element(By.LINK_TEXT, "Snapshots").click()
    assert rows(admin) == [first["id"]]
    sha = admin.find_element(By.CSS_SELECTOR, f"#snapshot-{first['id']} td.field-sha256")
    assert sha.get_attribute("title") == first["sha256"]

    admin.find_element(By.CSS_SELECTOR, "#capture-panel input[value='Capture now']").click()
    WebDriverWait(admin, WAIT).until(lambda b: messages(b))
    assert [level for level, _ in messages(admin)] == ["success"], messages(admin)
    assert capture_state(admin) in (Capture.RUNNING, Capture.DONE)  # or done already

    def ended(browser: WebDriver) -> str | None:
        browser.refresh()  # the page reloads itself too, every few seconds
        state = capture_state(browser)
        return state if state != Capture.RUNNING else None

    state = WebDriverWait(
        admin,
        CAPTURE_WAIT,
        poll_frequency=1,
        # The page's own reload may replace the element while it is read.
        ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
    ).until(ended, f"the capture did not end within {CAPTURE_WAIT} seconds")
    capture = Capture.objects.get()
    assert (state, capture.state, capture.error) == ("done", Capture.DONE, "")
    admin.refresh()
    assert rows(admin) == sorted([first["id"], capture.snapshot], reverse=True)
    assert capture.snapshot in admin.find_element(By.ID, "capture-panel").text

    admin.find_element(
        By.CSS_SELECTOR, f"#snapshot-{first['id']} a.diskette-delete"
    ).click()
    assert first["id"] in admin.find_element(By.ID, "content").text
    assert (registry / first["object"]).is_file()  # asking removes nothing
    admin.find_element(By.CSS_SELECTOR, "input[name=confirm]").click()
    WebDriverWait(admin, WAIT).until(lambda b: messages(b))
    assert (
        "success",
        f"Snapshot {first['id']} was deleted from storage 'diskette'.",
    ) in messages(admin)
    assert rows(admin) == [capture.snapshot]
    assert not (registry / first["object"]).exists()
    assert not (registry / "index" / f"{first['id']}.json").exists()
