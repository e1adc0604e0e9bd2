"""diskette: snapshots of a Django project's data and media in one archive.

Importing this package must stay cheap and side-effect free: it is imported by
``INSTALLED_APPS`` loading, by Invoke and by Fabric, none of which should pull
in Django settings just to learn the version.
"""

__version__ = "0.1.0"

#: Where the documentation lives for an installed copy, which has no ``docs/``
#: folder: hints in checks and task help are built from it.
DOCS_URL = "https://github.com/diskette-dev/django-diskette/blob/main/docs/"
