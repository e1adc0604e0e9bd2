"""The HTTP endpoints (:mod:`diskette.views`), to include under a path::

    path("diskette/", include("diskette.urls")),

gives ``diskette/snapshots/`` (the list), ``diskette/snapshots/latest/``
and ``diskette/snapshots/<id>/`` (downloads), ``diskette/captures/`` and
``diskette/captures/<id>/``.
"""

from django.urls import path

from . import views

app_name = "diskette"

urlpatterns = [
    path("snapshots/", views.snapshot_list, name="snapshots"),
    path(
        "snapshots/latest/",
        views.snapshot_download,
        {"reference": "latest"},
        name="latest",
    ),
    path("snapshots/<str:reference>/", views.snapshot_download, name="snapshot"),
    path("captures/", views.captures, name="captures"),
    path("captures/<uuid:capture_id>/", views.capture_state, name="capture"),
]
