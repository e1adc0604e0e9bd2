from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Snapshots over HTTPS with API keys (docs/http.md).
    path("diskette/", include("diskette.urls")),
]
