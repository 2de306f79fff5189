"""The store's own tables: customers, books with their metadata, orders and page views."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """A customer (or a member of staff) of the store."""

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        verbose_name = _("customer")
        verbose_name_plural = _("customers")


class Author(models.Model):
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="author_name_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class Genre(models.Model):
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="genre_name_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class BookFormat(models.TextChoices):
    PRINTED = "printedbook", _("Printed book")
    EBOOK = "ebook", _("E-book")
    AUDIOBOOK = "audiobook", _("Audiobook")


class BookQuerySet(models.QuerySet):
    def available(self) -> BookQuerySet:
        return self.filter(available=True)

    def for_listing(self) -> BookQuerySet:
        return self.select_related("author").prefetch_related("genres")


def product_key_problem(value: str) -> str | None:
    """Why ``value`` cannot be a product id, or None.  A product id is a path segment of the
    book's page (``/books/<id>/``): no ``/`` or ``\\``, no control characters (NUL and the
    like), not ``.`` or ``..`` (a browser resolves those to another page), no surrounding
    blanks.  Everything else (digits, letters of any script, ``-_.:#?%`` and spaces) works:
    ``reverse`` quotes it."""
    if not value:
        return "is empty"
    if value != value.strip():
        return "starts or ends with a blank"
    if value in (".", ".."):
        return f"is {value!r}, which a browser resolves to another page"
    bad = next((c for c in value if c in "/\\" or ord(c) < 32 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        return f"contains {bad!r}, which cannot be part of a page address"
    return None


def validate_product_key(value: str) -> None:
    if problem := product_key_problem(value):
        raise ValidationError(_("The product id %(value)r %(problem)s."), params={"value": value, "problem": problem},
                              code="invalid_product")  # fmt: skip


class Book(models.Model):
    # The shop's own product id, as in its exports (the `product` column): see validate_product_key.
    product = models.CharField(_("product id"), max_length=64, unique=True, validators=[validate_product_key])
    title = models.CharField(_("title"), max_length=300, blank=True)
    author = models.ForeignKey(
        Author, on_delete=models.PROTECT, null=True, blank=True, related_name="books", verbose_name=_("author")
    )
    genres = models.ManyToManyField(Genre, blank=True, related_name="books", verbose_name=_("genres"))
    # Free text with suggested choices: legacy exports carry formats we do not know yet.
    format = models.CharField(_("format"), max_length=32, choices=BookFormat.choices, blank=True)
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=2, null=True, blank=True)
    publication_date = models.DateField(_("publication date"), null=True, blank=True)
    available = models.BooleanField(_("available"), default=True, db_index=True)
    created = models.DateTimeField(_("created"), default=timezone.now, db_index=True)

    objects = BookQuerySet.as_manager()

    class Meta:
        ordering = ["title", "product"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0) | Q(price__isnull=True), name="book_price_not_negative"),
            models.CheckConstraint(condition=~Q(product=""), name="book_product_not_empty"),
        ]

    def __str__(self) -> str:
        return self.title or f"#{self.product}"

    def get_absolute_url(self) -> str:
        return reverse("book_detail", args=[self.product])


class Order(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders", verbose_name=_("customer")
    )
    created = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["user", "created"])]

    def __str__(self) -> str:
        return f"Order #{self.pk}"

    @property
    def total(self):
        return sum((line.subtotal for line in self.lines.all()), start=0)


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines", verbose_name=_("order"))
    book = models.ForeignKey(Book, on_delete=models.PROTECT, related_name="order_lines", verbose_name=_("book"))
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    unit_price = models.DecimalField(_("unit price"), max_digits=10, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="orderline_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="orderline_unit_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.book}"

    @property
    def subtotal(self):
        return self.quantity * self.unit_price


class Access(models.Model):
    """Page views of one book by one customer: a count, and when they were first and last seen."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="accesses", verbose_name=_("customer")
    )
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="accesses", verbose_name=_("book"))
    count = models.PositiveIntegerField(_("views"), default=1)
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("page view")
        verbose_name_plural = _("page views")
        constraints = [
            models.UniqueConstraint(fields=["user", "book"], name="access_one_row_per_user_book"),
            models.CheckConstraint(condition=Q(count__gte=1), name="access_count_positive"),
            models.CheckConstraint(condition=Q(last_seen__gte=F("first_seen")), name="access_seen_in_order"),
        ]
        indexes = [models.Index(fields=["book"], name="access_book_idx")]

    def __str__(self) -> str:
        return f"{self.user} viewed {self.book} ×{self.count}"


class ImportBatch(models.Model):
    """One run of ``import_interactions``: which file, when, and what it changed."""

    filename = models.CharField(_("file"), max_length=500)
    sha256 = models.CharField(_("SHA-256 of the file"), max_length=64, db_index=True)
    started = models.DateTimeField(_("started"), default=timezone.now)
    finished = models.DateTimeField(_("finished"), null=True, blank=True)
    rows = models.PositiveIntegerField(_("rows"), default=0)
    counts = models.JSONField(_("counts"), default=dict, blank=True)

    class Meta:
        ordering = ["-started"]
        verbose_name = _("import")
        verbose_name_plural = _("imports")

    def __str__(self) -> str:
        return f"{self.filename} ({self.started:%Y-%m-%d %H:%M})"


class ImportedInteraction(models.Model):
    """The natural key of every imported row (username, product, type, timestamp), hashed:
    importing the same row again finds it here and changes nothing."""

    key = models.CharField(max_length=40, unique=True)
    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="+")

    class Meta:
        verbose_name = _("imported interaction")
