"""The demo data as plain values, independent of primary keys.

Two databases hold the same demo data when :func:`data_state` gives the same
result, whatever primary keys their rows got. The tests compare it before a
dump and after a load; ``demo_fingerprint`` digests it. Nothing here imports
diskette, so it also runs beside diskette 0.6 in the cross-version tests.
"""

from django.contrib.auth import get_user_model

from demo.models import Book, Review


def data_state():
    User = get_user_model()  # auth.User, or a custom one such as shop.Shopper
    # Many-to-many names come from their through tables in one query each:
    # prefetch_related would send every primary key as a query parameter,
    # more than SQLite accepts at the benchmark's million rows.
    groups_field = User._meta.get_field("groups")  # its column: user, shopper...
    groups = names_by_owner(
        groups_field.remote_field.through.objects.values_list(
            groups_field.m2m_field_name(), "group__name"
        )
    )
    permissions_field = User._meta.get_field("user_permissions")
    permissions = names_by_owner(
        permissions_field.remote_field.through.objects.values_list(
            permissions_field.m2m_field_name(), "permission__codename"
        )
    )
    tags = names_by_owner(Book.tags.through.objects.values_list("book_id", "tag__name"))
    # Every column of a user, whichever the model (a custom one's own too).
    columns = [f.attname for f in User._meta.concrete_fields if not f.primary_key]
    return {
        "users": sorted(
            [
                *(str(getattr(u, column)) for column in columns),
                groups.get(u.pk, []),
                permissions.get(u.pk, []),
            ]
            for u in User.objects.iterator()
        ),
        "books": sorted(
            [
                b.title,
                b.author.name,
                tags.get(b.pk, []),
                b.cover.name,
                b.added_by.username if b.added_by else None,
                str(b.published),
            ]
            for b in Book.objects.select_related("author", "added_by").iterator()
        ),
        "reviews": sorted(
            [r.book.title, r.reviewer.username, r.rating]
            for r in Review.objects.select_related("book", "reviewer").iterator()
        ),
    }


def names_by_owner(pairs):
    """``{owner primary key: sorted names}`` from (owner, name) pairs."""
    names = {}
    for owner, name in pairs:
        names.setdefault(owner, []).append(name)
    return {owner: sorted(values) for owner, values in names.items()}
