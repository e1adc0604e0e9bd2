"""Fabric entry point of the diskette repository.

Remote tasks (``pull-snapshot``, ``push-snapshot``, ``remote-dump``) will live
in ``diskette.remote`` and be imported here; none exist yet.
"""

from invoke import Collection

ns = Collection()
