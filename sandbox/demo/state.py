"""The demo data as plain values, independent of primary keys.

Two databases hold the same demo data when :func:`data_state` gives the same
result, whatever primary keys their rows got. The tests compare it before a
dump and after a load; ``demo_fingerprint`` digests it. Nothing here imports
diskette, so it also runs beside diskette 0.6 in the cross-version tests.
"""

from django.contrib.auth.models import User

from demo.models import Book, Review


def data_state():
    return {
        "users": sorted(
            [u.username, u.email, u.password, sorted(g.name for g in u.groups.all())]
            for u in User.objects.prefetch_related("groups")
        ),
        "books": sorted(
            [
                b.title,
                b.author.name,
                sorted(t.name for t in b.tags.all()),
                b.cover.name,
                b.added_by.username if b.added_by else None,
                str(b.published),
            ]
            for b in Book.objects.select_related("author", "added_by").prefetch_related(
                "tags"
            )
        ),
        "reviews": sorted(
            [r.book.title, r.reviewer.username, r.rating]
            for r in Review.objects.select_related("book", "reviewer")
        ),
    }
