"""Settings of the diskette sandbox: the layout of the user guide's basic sample.

::

    sandbox/
    ├── manage.py
    ├── project/settings.py
    └── var/media
"""

from pathlib import Path

BASE_DIR = Path(__file__).parents[1]
VAR_PATH = BASE_DIR / "var"
MEDIA_ROOT = VAR_PATH / "media"
MEDIA_URL = "media/"
STATIC_URL = "static/"

SECRET_KEY = "sandbox-only-this-is-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SITE_ID = 1
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "project.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "diskette",
    "polymorphic",  # django-polymorphic asks for it: its system checks
    "demo",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_PATH / "db.sqlite3",
    }
}

DISKETTE_APPS = [
    [
        "django.contrib.auth",
        {
            "comments": "Users and groups; permissions come back with migrate",
            "natural_foreign": True,
            "models": ["auth.Group", "auth.User"],
        },
    ],
    [
        "django.contrib.sites",
        {"comments": "Sites", "natural_foreign": True, "models": "sites"},
    ],
    [
        "demo",
        {
            "comments": "The demo library; reviews are left to the drain",
            "natural_foreign": True,
            "models": "demo",
            "excludes": ["demo.Review"],
            "allow_drain": True,
        },
    ],
    [
        "shop",
        {
            "comments": "The demo shop: every model kind of a real site",
            "natural_foreign": True,
            "models": "shop",
            # A project whose AUTH_USER_MODEL is shop.Shopper dumps it with the
            # users, in the first definition; swapped out, it has no rows anyway.
            "excludes": ["shop.Shopper"],
        },
    ],
    [
        "everything else",
        {
            "comments": "Whatever no definition above covers",
            "is_drain": True,
            "natural_foreign": True,
            # Model labels, not app labels: diskette 0.6 reads these settings too.
            "excludes": [
                "contenttypes.ContentType",
                "auth.Permission",
                "sessions.Session",
                "admin.LogEntry",
            ],
        },
    ],
]
DISKETTE_STORAGES = [MEDIA_ROOT]
DISKETTE_STORAGES_EXCLUDES = [
    "cache/*",
    "pil/*",
    "public/thumbnails/*",
]
DISKETTE_DUMP_PATH = VAR_PATH
