"""diskette in Django's admin: API keys, captures and the registry's snapshots.

**API keys** are made here as with ``manage.py diskette_apikey create``: the
key is shown once, in the message that follows the form, and only its hash
is stored; nothing can show it again. A key that leaked is revoked (an
action), not deleted, so that the list keeps who had access and until when.

**Captures** are listed read-only: they are made by the endpoints or by the
*Capture now* button of the snapshots page, never by hand.

**Snapshots** live in the registry's storage, not in the database: their
page lists the registry (:mod:`diskette.registry`) and never a queryset.
The model's permissions say who may do what: *view* lists and downloads,
*add* captures, *delete* removes. A download goes through the admin's
session (staff only), unlike the endpoints, which take API keys only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from . import apikeys, capture, views
from .conf import get_settings
from .exceptions import CaptureError, ConfigurationError, DisketteError, RegistryError
from .models import ApiKey, Capture, Snapshot
from .progress import human_size
from .registry import ID_PATTERN, Registry
from .registry import Snapshot as PublishedSnapshot
from .reporting import error_line

# API keys ------------------------------------------------------------------

#: What each scope allows, as the add form's checkboxes say it.
SCOPE_LABELS = {
    "download": "download: list and fetch snapshots",
    "capture": "capture: start a new snapshot",
}
#: How long a new key lives: :func:`diskette.apikeys.parse_expiry` durations,
#: ``never``, or ``date`` for the date given beside.
EXPIRY_CHOICES = [
    ("30d", "in 30 days"),
    ("90d", "in 90 days"),
    ("365d", "in a year"),
    ("never", "never"),
    ("date", "on the date below"),
]


class ApiKeyCreationForm(forms.ModelForm):
    """The add form: a name, scopes and an expiry; the key itself is made
    on save (:meth:`ApiKeyAdmin.save_model`), never typed in."""

    scopes = forms.MultipleChoiceField(
        choices=[(scope, SCOPE_LABELS.get(scope, scope)) for scope in apikeys.SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="Give a key only what it is for: a developer's laptop downloads, "
        "a scheduler captures.",
    )
    expiry = forms.ChoiceField(
        choices=EXPIRY_CHOICES,
        initial="90d",
        widget=forms.RadioSelect,
        label="Expires",
    )
    expires_on = forms.SplitDateTimeField(
        required=False,
        widget=widgets.AdminSplitDateTime,
        label="Expiry date",
        help_text="Only with “on the date below”.",
    )

    class Meta:
        model = ApiKey
        fields = ["name"]

    #: The request, set by :meth:`ApiKeyAdmin.get_form`: whose permissions
    #: bound the scopes a key may get.
    request: HttpRequest | None = None

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean()
        if "scopes" in data:
            try:
                data["scopes"] = apikeys.parse_scopes(data["scopes"])
            except ConfigurationError as exc:
                self.add_error("scopes", str(exc))
            else:
                self.check_scopes(data["scopes"].split())
        choice = data.get("expiry")
        if choice == "date":
            when: datetime | None = data.get("expires_on")
            if when is None:
                self.add_error("expires_on", "Give the date the key expires on.")
            elif when <= timezone.now():
                self.add_error("expires_on", "That date is past: give a future one.")
            elif when > timezone.now() + apikeys.LONGEST:
                self.add_error("expires_on", "A key lives ten years at most.")
            data["expires"] = when
        elif choice is not None:
            try:
                data["expires"] = apikeys.parse_expiry(choice)
            except ConfigurationError as exc:
                self.add_error("expiry", str(exc))
        return data

    def check_scopes(self, scopes: list[str]) -> None:
        """A key gives no more than its maker may do: who may not download
        (view) or capture (add) snapshots makes no key that does."""
        user = getattr(self.request, "user", None)
        for scope in scopes:
            needed = f"diskette.{SCOPE_PERMISSIONS[scope]}"
            if user is None or not user.has_perm(needed):
                self.add_error(
                    "scopes",
                    f"You may not give a key the {scope} scope: it needs the "
                    f"permission {needed}, which you do not have.",
                )


#: The permission on snapshots a maker of a key needs for each scope.
SCOPE_PERMISSIONS = {"download": "view_snapshot", "capture": "add_snapshot"}


class KeyStateFilter(admin.SimpleListFilter):
    """The keys by :meth:`ApiKey.state`, which no column stores."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "revoked":
            return queryset.filter(revoked__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked__isnull=True, expires__lte=now)
        if self.value() == "active":
            return queryset.filter(revoked__isnull=True).filter(
                Q(expires__isnull=True) | Q(expires__gt=now)
            )
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made by the add form and revoked by an action; only their
    name can be changed, and their hash is never shown."""

    add_form = ApiKeyCreationForm
    add_fieldsets = ((None, {"fields": ("name", "scopes", "expiry", "expires_on")}),)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "key",
                    "scopes",
                    "state",
                    "created",
                    "expires",
                    "revoked",
                    "last_used",
                )
            },
        ),
    )
    list_display = ("name", "key", "scopes", "state", "created", "expires", "last_used")
    list_filter = (KeyStateFilter, "scopes")
    search_fields = ("name", "key_id")
    actions = ["revoke_selected"]

    @admin.display(description="key")
    def key(self, obj: ApiKey) -> str:
        """The key's public part: enough to tell keys apart, useless to use one."""
        return f"{apikeys.PREFIX}{obj.key_id}_…"

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        return obj.state()

    def get_fieldsets(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def get_form(
        self,
        request: HttpRequest,
        obj: ApiKey | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:  # the scopes it may give are those of who fills it in
            return type(form.__name__, (form,), {"request": request})
        return form

    def has_delete_permission(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> bool:
        """Keys are revoked, never deleted: the list keeps who had access."""
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ()
        return ("key", "scopes", "state", "created", "expires", "revoked", "last_used")

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: Any, change: bool
    ) -> None:
        """A new key is made by :func:`apikeys.create`, and shown this once."""
        if change:
            super().save_model(request, obj, form, change)
            return
        made = apikeys.create(
            form.cleaned_data["name"],
            form.cleaned_data["scopes"],
            form.cleaned_data["expires"],
        )
        # The admin goes on with ``obj`` (its log entry, its answer): make it the row.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(made.row, field.attname))
        obj._state.adding = False
        obj._state.db = made.row._state.db
        request._diskette_new_key = made.key

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponseBase:
        """The new key, on the page that answers the form itself.

        Not in a message after a redirect: Django keeps messages in a
        cookie, and the key would go back and forth over the wire, and stay
        in the browser's cookies, before it is shown.
        """
        key = getattr(request, "_diskette_new_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key made",
            "opts": self.opts,
            "key": key,
            "row": obj,
            "changelist_url": reverse(
                f"{self.admin_site.name}:diskette_apikey_changelist",
                current_app=self.admin_site.name,
            ),
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/diskette/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        """Revoke at once and for good: a revoked key is refused from then on."""
        active = list(queryset.filter(revoked__isnull=True))
        ApiKey.objects.filter(pk__in=[key.pk for key in active]).update(
            revoked=timezone.now()
        )
        for key in active:
            self.log_change(request, key, "Revoked.")
        if active:
            names = ", ".join(key.name for key in active)
            self.message_user(
                request, f"Revoked {len(active)} API key(s): {names}.", messages.SUCCESS
            )
        else:
            self.message_user(
                request, "The selected keys were revoked already.", messages.INFO
            )


# Captures ------------------------------------------------------------------


@admin.register(Capture)
class CaptureAdmin(admin.ModelAdmin):
    """What was captured, when, at whose request, and why a capture failed.
    Read-only: captures start from the snapshots page or the endpoints."""

    list_display = ("started", "state", "requested_by", "finished", "snapshot", "error")
    list_filter = ("state",)
    search_fields = ("requested_by", "snapshot")
    fields = (
        "id",
        "state",
        "requested_by",
        "started",
        "heartbeat",
        "finished",
        "snapshot",
        "error",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Capture | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Capture | None = None
    ) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponseBase:
        capture.expire_lost()  # a capture whose process died shows as lost
        return super().changelist_view(request, extra_context)


# Snapshots -----------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRow:
    """A snapshot as its page shows it."""

    snapshot: PublishedSnapshot
    size: str
    download_url: str
    delete_url: str


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """The registry's snapshots: listed, downloaded, captured and deleted.

    Every view of this admin reads the registry's storage; none touches the
    database but for the captures. Its own URLs replace the model admin's
    (there are no rows to add or change); the changelist keeps its usual
    name, so the admin index and the sidebar link to it.
    """

    change_list_template = "admin/diskette/snapshot/change_list.html"
    delete_confirmation_template = "admin/diskette/snapshot/delete_confirmation.html"

    # Permissions: view lists and downloads, add captures, delete removes.

    def has_add_permission(self, request: HttpRequest) -> bool:
        """No add form: capturing (the *add* permission) is a button."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_capture_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("add", self.opts)
        return bool(request.user.has_perm(f"{self.opts.app_label}.{codename}"))

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        """Shown in the index, as a link to the list, to who may see the list."""
        viewer = self.has_view_permission(request)
        return {
            "view": viewer,
            "add": False,
            "change": False,
            "delete": viewer and self.has_delete_permission(request),
        }

    # URLs and views.

    def _name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def _url(self, view: str, *args: str) -> str:
        return reverse(
            f"{self.admin_site.name}:{self._name(view)}",
            args=args,
            current_app=self.admin_site.name,
        )

    def get_urls(self) -> list[URLPattern]:
        guard = self.admin_site.admin_view
        return [
            path("", guard(self.changelist_view), name=self._name("changelist")),
            path("capture/", guard(self.capture_view), name=self._name("capture")),
            path(
                "<str:snapshot_id>/download/",
                guard(self.download_view),
                name=self._name("download"),
            ),
            path(
                "<str:snapshot_id>/delete/",
                guard(self.remove_view),
                name=self._name("delete"),
            ),
        ]

    def _registry(self) -> Registry:
        """The registry of the settings; a misconfiguration raises
        :class:`~diskette.exceptions.ConfigurationError`, a one-liner."""
        return Registry.from_settings(get_settings())

    def _find(self, registry: Registry, snapshot_id: str) -> PublishedSnapshot:
        """The snapshot of exactly this id (never a prefix, nor ``latest``).

        :raises RegistryError: none, as a message for the list page.
        """
        snapshot = registry.get(snapshot_id) if ID_PATTERN.fullmatch(snapshot_id) else None
        if snapshot is None:
            raise RegistryError(
                f"storage {registry.alias!r} holds no snapshot {snapshot_id!r} "
                "(deleted meanwhile?)"
            )
        return snapshot

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "changelist_url": self._url("changelist"),
            **extra,
        }

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(self._url("changelist"))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponseBase:
        """The registry's snapshots, newest first, and the latest capture.

        A storage that fails is an error message on the page, not a 500:
        the page is where an administrator looks for what is wrong.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        alias, rows, readable = "", [], False
        try:
            registry = self._registry()
            alias = registry.alias
            listing = registry.listing()
        except DisketteError as exc:
            messages.error(request, error_line(exc))
        else:
            readable = True
            rows = [
                SnapshotRow(
                    snapshot=snapshot,
                    size=human_size(snapshot.size),
                    download_url=self._url("download", snapshot.id),
                    delete_url=self._url("delete", snapshot.id),
                )
                for snapshot in listing.snapshots
            ]
            for damaged in listing.damaged:
                messages.warning(request, damaged)
        latest = capture.latest()
        request.current_app = self.admin_site.name
        context = self._context(
            request,
            title=str(self.opts.verbose_name_plural).capitalize(),
            alias=alias,
            readable=readable,
            rows=rows,
            capture=latest,
            capture_running=latest is not None and latest.state == Capture.RUNNING,
            can_capture=self.has_capture_permission(request),
            can_delete=self.has_delete_permission(request),
            capture_url=self._url("capture"),
            **(extra_context or {}),
        )
        return TemplateResponse(request, self.change_list_template, context)

    def download_view(self, request: HttpRequest, snapshot_id: str) -> HttpResponseBase:
        """The stored object (the age ciphertext of an encrypted snapshot),
        as the endpoints send it, to a staff member with *view*."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        try:
            registry = self._registry()
            snapshot = self._find(registry, snapshot_id)
            # Opened and read before the answer starts: a missing or refused
            # object is still a message on the list, not a cut download.
            body = views.opened(views.stream_snapshot(registry, snapshot, 0, snapshot.size))
        except DisketteError as exc:
            messages.error(request, error_line(exc))
            return self._back()
        response = StreamingHttpResponse(body, content_type="application/octet-stream")
        name = snapshot.object.rsplit("/", 1)[-1]
        response["Content-Length"] = str(snapshot.size)
        response["Content-Disposition"] = f'attachment; filename="diskette-snapshot-{name}"'
        response["X-Diskette-Snapshot"] = snapshot.id
        return response

    def capture_view(self, request: HttpRequest) -> HttpResponseBase:
        """Start a capture on a thread; the list then shows how it goes."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_capture_permission(request):
            raise PermissionDenied
        try:
            run = capture.start(requested_by=f"admin {request.user.get_username()}")
        except CaptureError as exc:
            messages.warning(request, error_line(exc))
        else:
            messages.success(
                request,
                f"Capture {run.pk} started: the snapshot appears below once it is "
                "published; reload the page to follow it.",
            )
        return self._back()

    def remove_view(self, request: HttpRequest, snapshot_id: str) -> HttpResponseBase:
        """A confirmation page (GET), then the removal (POST): the index
        first, so that nobody is offered a snapshot whose archive is gone."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        try:
            registry = self._registry()
            snapshot = self._find(registry, snapshot_id)
            if request.method == "POST":
                registry.remove(snapshot)
        except DisketteError as exc:
            messages.error(request, error_line(exc))
            return self._back()
        if request.method == "POST":
            messages.success(
                request,
                f"Snapshot {snapshot.id} was deleted from storage {registry.alias!r}.",
            )
            return self._back()
        request.current_app = self.admin_site.name
        context = self._context(
            request,
            title="Are you sure?",
            alias=registry.alias,
            snapshot=snapshot,
            size=human_size(snapshot.size),
        )
        return TemplateResponse(request, self.delete_confirmation_template, context)
