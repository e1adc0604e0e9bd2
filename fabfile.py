"""Fabric entry point of the diskette repository: diskette's own remote tasks.

``fab -H HOST pull-snapshot`` and friends, for a deployed copy of the sandbox;
say where it lives in ``fabric.yaml`` (``diskette.remote.project_dir``).
"""

from diskette.remote import ns  # noqa: F401 - what Fabric looks for
