"""Anonymization end to end, on a copy of the sandbox with 2,000 customers.

Production dumps with rules (``RULES``); the archive is searched, byte by
byte once decompressed, for the personal values the seed wrote, then loaded
into a fresh database on the suite's database. A laptop that requires
anonymized archives refuses a raw one and keeps its data. The pull over SSH
is in ``test_remote.py``.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from tests.projects import SandboxCopy

pytestmark = pytest.mark.subprocess

USERS = 2000
RULES = """
DISKETTE_ANONYMIZE = {
    "auth.User": {
        "email": "email",
        "first_name": "first_name",
        "last_name": "last_name",
        "username": "user_name",
        "password": "password",
    },
    "shop.Customer": {
        "handle": "first_name",
        "email": "email",
        "phone": "phone_number",
        "ip": "ipv4",
        "address": "address",
        "notes": "empty",
        "profile": {
            "address.street": "street_address",
            "address.city": "city",
            "phones.*": "phone_number",
        },
        "id_scan": "drop",
    },
}
DISKETTE_ANONYMIZE_SECRET = "an-end-to-end-test-secret"
"""
#: Every personal value ``shop_seed_customers`` writes matches one of these
#: (its row number makes it one no fake can be): each seeded value is found
#: by them in a raw dump, so none found means none leaked.
ORIGINALS = [
    rb"(?:member|Given|Family|Handle|Townsville)\d{5}",
    rb"(?i:given\d{5}\.family@mail\.invalid)",
    rb"\+33 6 \d{8}",
    rb"\+44 7700 \d{6}",
    rb'"198\.18\.\d+\.\d+"',
    rb"\d{5} (?:Orchard Lane|Harbour Road)",
    rb"Passport of",
]

#: Prints what a load must keep as it was (fields without rules) and the
#: properties anonymized values must have.
STATE = """
import json
from django.conf import settings
from django.contrib.auth.models import User
from demo.models import Book
from shop.models import Customer, Order
customers = list(Customer.objects.select_related("user"))
print(json.dumps({
    "users": User.objects.count(),
    "usernames": len(set(User.objects.values_list("username", flat=True))),
    "customers": len(customers),
    "handles": len({c.handle.casefold() for c in customers}),
    "same email as their user": sum(c.email == c.user.email for c in customers),
    "kept": sorted([c.tier, c.profile["newsletter"], len(c.profile["phones"])] for c in customers),
    "books": sorted([b.title, b.author.name, b.cover.name] for b in Book.objects.all()),
    "orders": sorted(o.placed_at.isoformat() for o in Order.objects.all()),
    "scans": sorted(c.id_scan.name for c in customers),
    "scan files": sorted(p.name for p in (settings.MEDIA_ROOT / "customers").glob("*")),
}))
"""


def state(project: SandboxCopy) -> dict:
    return json.loads(project.manage("shell", "-c", STATE).stdout.splitlines()[-1])


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def leaks(archive: Path) -> dict[str, int]:
    """How many originals each pattern finds in the archive's every member."""
    blob = b"\n".join(members(archive).values())
    return {p.decode(): len(re.findall(p, blob)) for p in ORIGINALS}


@pytest.fixture(scope="module")
def production(tmp_path_factory, seeded):
    """A production copy with 2,000 customers, its rules, and two dumps."""
    root = tmp_path_factory.mktemp("anonymize") / "production"
    copy = seeded.copy(root, books=8, seed=5)
    copy.manage("shop_seed_customers", "--users", str(USERS))
    copy.use_settings(copy.write_settings("settings_anon", copy.database + RULES))
    dumps = [
        json.loads(copy.manage("diskette_dump", "--filename", name, "--json").stdout)
        for name in ("first.tar.gz", "second.tar.gz")
    ]
    raw = copy.manage(
        "diskette_dump", "--filename", "raw.tar.gz", "--no-anonymize", "--json"
    )
    copy.raw_stderr = raw.stderr
    copy.archives = [Path(d["archive"]) for d in dumps] + [
        Path(json.loads(raw.stdout)["archive"])
    ]
    copy.answers = dumps
    return copy


def test_no_original_personal_value_is_anywhere_in_the_archive(production):
    anonymized, _, raw = production.archives

    assert all(leaks(raw).values()), leaks(raw)  # the search finds what is there
    assert not any(leaks(anonymized).values()), leaks(anonymized)
    password = production.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "print(User.objects.filter(username__startswith='member')[0].password)",
    ).stdout.splitlines()[-1]
    assert password.encode() in b"".join(members(raw).values())
    assert password.encode() not in b"".join(members(anonymized).values())


def test_the_manifest_and_the_answer_say_anonymized(production):
    first = json.loads(members(production.archives[0])["manifest.json"])
    raw = json.loads(members(production.archives[2])["manifest.json"])

    assert first["anonymized"] is True and raw["anonymized"] is False
    assert first["anonymization"]["rules"].startswith("sha256:")
    assert first["anonymization"]["fields"]["shop.customer"]["id_scan"] == "drop"
    assert first["anonymization"]["files_left_out"] == USERS
    assert "an-end-to-end-test-secret" not in json.dumps(first)
    assert production.answers[0]["anonymized"] is True
    assert "Warning: --no-anonymize" in production.raw_stderr


def test_a_plan_against_a_list_leaves_out_the_files_a_rule_drops(production, tmp_path):
    """A pull's dry run asks the host for ``diskette_dump --check --base``: the
    scans a rule drops are not counted as sent, as the dump leaves them out."""
    nothing = tmp_path / "nothing-here.json"
    nothing.write_text(json.dumps({"format": 1, "storages": {}}))
    dump = ("diskette_dump", "--base", str(nothing), "--json")

    planned = json.loads(production.manage(*dump, "--check").stdout)
    done = json.loads(production.manage(*dump, "--filename", "delta.tar.gz").stdout)

    sent = sum(change["added"] for change in planned["delta"])
    every = sum(counts["files"] for counts in planned["storages"].values())
    archived = [
        name
        for name in members(Path(done["archive"]))
        if name.startswith(tuple(f"{storage}/" for storage in done["storages"]))
    ]
    assert sent == len(archived) == every - USERS


def test_two_dumps_write_identical_data(production):
    first, second, _ = (members(a) for a in production.archives)
    data = [name for name in first if name.startswith("data/")]

    assert data and all(first[name] == second[name] for name in data)


def test_the_archive_loads_into_a_fresh_database_with_its_references(
    production, seeded, tmp_path
):
    fresh = seeded.copy(tmp_path / "laptop", books=None)

    fresh.manage("diskette_load", str(production.archives[0]), "--keep")

    before, after = state(production), state(fresh)
    assert after["users"] == before["users"] == after["usernames"]  # unique
    # Unique, casefolded; the seed gives every user a customer record.
    assert after["customers"] == after["handles"] == after["users"] > USERS
    # One email, one fake, in both tables; the natural key to each user held.
    assert after["same email as their user"] == after["customers"]
    for unchanged in ("kept", "books", "orders"):
        assert after[unchanged] == before[unchanged]
    assert set(after["scans"]) == {""} and after["scan files"] == []
    assert before["scan files"]  # they were there to leave out


def test_a_laptop_requiring_anonymized_archives_refuses_a_raw_one(
    production, seeded, tmp_path
):
    _, _, raw = production.archives
    laptop = seeded.copy(tmp_path / "laptop", books=3)
    (laptop.root / "tasks.py").write_text("from diskette.tasks import ns\n")
    laptop.use_settings(
        laptop.write_settings(
            "settings_dev", laptop.database + "DISKETTE_LOAD_REQUIRE_ANONYMIZED = True\n"
        )
    )
    before = laptop.fingerprint()

    loaded = laptop.manage("diskette_load", str(raw), "--keep", check=False)
    pulled = laptop.inv("reset-and-load", str(raw), "--yes", check=False)

    for result in (loaded, pulled):
        assert result.returncode != 0
        error = result.stderr.strip().splitlines()[-1]
        assert "'raw.tar.gz' is not anonymized" in error and "--allow-raw" in error
    assert laptop.fingerprint() == before
    # An anonymized archive goes in, through the safety snapshot and all.
    laptop.inv("reset-and-load", str(production.archives[0]), "--yes")
    assert laptop.fingerprint() != before
