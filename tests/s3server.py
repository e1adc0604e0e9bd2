"""A real S3-compatible server for the suite: moto's standalone server on 127.0.0.1.

diskette reaches it through boto3 and django-storages exactly as production
reaches AWS or a compatible store: by ``endpoint_url`` and access keys. The
server checks credentials like S3 does (moto's IAM access control): once
started, it makes two users and then refuses any request that is not signed
by a known key, so a test sees the real "wrong credentials" and "access
denied" answers:

- :attr:`S3Server.admin`: may do anything to any bucket;
- :attr:`S3Server.reader`: may list and read, never write or delete.

It runs as the user running the suite, in a process of its own, and is
stopped at the end of the session. moto comes with the ``test`` extra
(``moto[server]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "us-east-1"
#: Actions moto lets through before it checks signatures: enough to create
#: the users; the suite then turns checking on (``reset-auth``).
SETUP_ACTIONS = 1_000_000

READ_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            # s3:ListBucket is S3's name for listing; moto 5.2.6 and later
            # check s3:ListObjectsV2 instead (no such IAM action): both, so
            # that the read-only key lists on every moto the extra allows.
            "Action": [
                "s3:GetObject",
                "s3:ListBucket",
                "s3:ListObjectsV2",
                "s3:HeadObject",
            ],
            "Resource": "*",
        }
    ],
}
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


@dataclass
class S3Server:
    """A running S3 server and the keys that reach it."""

    endpoint: str
    process: subprocess.Popen
    admin: Keys
    reader: Keys

    def client(self, keys: Keys | None = None) -> Any:
        import boto3

        keys = keys or self.admin
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=keys.access_key,
            aws_secret_access_key=keys.secret_key,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def options(
        self, bucket: str, keys: Keys | None = None, **extra: Any
    ) -> dict[str, Any]:
        """The ``OPTIONS`` of a django-storages ``S3Storage`` on ``bucket``."""
        keys = keys or self.admin
        return {
            "bucket_name": bucket,
            "endpoint_url": self.endpoint,
            "access_key": keys.access_key,
            "secret_key": keys.secret_key,
            "region_name": REGION,
            "file_overwrite": True,
            **extra,
        }

    def settings_body(self, aliases: dict[str, dict[str, Any]]) -> str:
        """Settings lines that add S3 storages (alias: extra options with a
        ``bucket``) to the sandbox's ``STORAGES``."""
        lines = [
            "from django.conf import global_settings",
            "STORAGES = {**globals().get('STORAGES', global_settings.STORAGES)}",
        ]
        for alias, extra in aliases.items():
            extra = dict(extra)
            options = self.options(extra.pop("bucket"), extra.pop("keys", None), **extra)
            lines.append(
                f"STORAGES[{alias!r}] = {{'BACKEND': 'storages.backends.s3.S3Storage', "
                f"'OPTIONS': {options!r}}}"
            )
        return "\n".join(lines) + "\n"

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            for item in page.get("Contents", ()):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])[
                    "Body"
                ].read()
        return found

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()


def start_s3(log: Path) -> S3Server:
    """Start moto's server on a free loopback port and set up its users."""
    port = _free_port()
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS),
        "AWS_DEFAULT_REGION": REGION,
    }
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_for(endpoint, process, log)
    setup = Keys("setup", "setup")
    server = S3Server(endpoint, process, setup, setup)
    try:
        server.admin = _user(endpoint, "diskette-admin", ADMIN_POLICY)
        server.reader = _user(endpoint, "diskette-reader", READ_ONLY_POLICY)
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).close()
    except BaseException:
        server.stop()
        raise
    return server


def _user(endpoint: str, name: str, policy: dict[str, Any]) -> Keys:
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        region_name=REGION,
    )
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


def _wait_for(endpoint: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2).close()
            return
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the S3 server did not answer within a minute: {log}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def moto_installed() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True
