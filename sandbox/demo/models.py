"""A small library catalogue with every relation a dump must carry.

Foreign keys (Book -> Author, Review -> Book, -> User), a many-to-many
(Book.tags), natural keys (Author, Tag, and Book's, which depends on Author's)
and uploaded files (Book.cover).
"""

from django.conf import settings
from django.db import models


class NameManager(models.Manager):
    def get_by_natural_key(self, name):
        return self.get(name=name)


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)

    objects = NameManager()

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.name,)


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    objects = NameManager()

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.name,)


class BookManager(models.Manager):
    def get_by_natural_key(self, title, author):
        return self.get(title=title, author__name=author)


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, blank=True, related_name="books")
    cover = models.FileField(upload_to="covers/", blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    published = models.DateField(null=True, blank=True)

    objects = BookManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["title", "author"], name="unique_title_author")
        ]

    def __str__(self):
        return self.title

    def natural_key(self):
        return (self.title, *self.author.natural_key())

    natural_key.dependencies = ["demo.author"]


class Review(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    rating = models.PositiveSmallIntegerField()
    body = models.TextField(blank=True)

    def __str__(self):
        return f"{self.rating}/5 for {self.book}"
