"""Admin for the store: books and their metadata, customers, orders and page views."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Sum
from django.urls import NoReverseMatch
from django.utils.translation import gettext_lazy as _

from .models import Access, Author, Book, Genre, ImportBatch, Order, OrderLine, User

admin.site.site_header = _("Bookstore administration")
admin.site.site_title = _("Bookstore admin")

# Longer than any field the lists search, and far below SQLite's 50,000-byte limit on a
# LIKE pattern, past which the query fails instead of finding nothing.
MAX_SEARCH_LENGTH = 1000


class BoundedSearch:
    """A search longer than ``MAX_SEARCH_LENGTH`` characters finds nothing, never a 500.
    (Django's search form already drops a search with NUL, which PostgreSQL refuses.)"""

    def get_search_results(self, request, queryset, search_term):
        if len(search_term) > MAX_SEARCH_LENGTH:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(User)
class CustomerAdmin(BoundedSearch, UserAdmin):
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "date_joined")
    show_full_result_count = False


@admin.register(Author)
class AuthorAdmin(BoundedSearch, admin.ModelAdmin):
    list_display = ("name", "book_count")
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(book_count=Count("books"))

    @admin.display(description=_("books"), ordering="book_count")
    def book_count(self, obj):
        return obj.book_count


@admin.register(Genre)
class GenreAdmin(BoundedSearch, admin.ModelAdmin):
    list_display = ("name", "slug", "book_count")
    search_fields = ("name",)
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(book_count=Count("books"))

    @admin.display(description=_("books"), ordering="book_count")
    def book_count(self, obj):
        return obj.book_count


@admin.register(Book)
class BookAdmin(BoundedSearch, admin.ModelAdmin):
    list_display = ("product", "title", "author", "format", "price", "publication_date", "available")
    list_display_links = ("product", "title")
    list_filter = ("available", "format", "genres", "created")
    list_editable = ("available",)
    list_select_related = ("author",)
    search_fields = ("product", "title", "author__name")
    autocomplete_fields = ("author",)
    filter_horizontal = ("genres",)
    date_hierarchy = "created"
    show_full_result_count = False

    def view_on_site(self, obj):
        """The book's page; no "View on site" for a book whose product id cannot be a page
        address (a row from before the validator: see ProductConverter in urls.py)."""
        try:
            return obj.get_absolute_url()
        except NoReverseMatch:
            return None


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    autocomplete_fields = ("book",)


@admin.register(Order)
class OrderAdmin(BoundedSearch, admin.ModelAdmin):
    list_display = ("id", "user", "created", "line_count", "order_total")
    list_select_related = ("user",)
    search_fields = ("=id", "user__username", "user__email")
    raw_id_fields = ("user",)
    date_hierarchy = "created"
    inlines = [OrderLineInline]
    show_full_result_count = False

    def get_queryset(self, request):
        line_total = ExpressionWrapper(
            F("lines__quantity") * F("lines__unit_price"), output_field=DecimalField(max_digits=12, decimal_places=2)
        )
        return super().get_queryset(request).annotate(line_count=Count("lines"), order_total=Sum(line_total))

    @admin.display(description=_("lines"), ordering="line_count")
    def line_count(self, obj):
        return obj.line_count

    @admin.display(description=_("total"), ordering="order_total")
    def order_total(self, obj):
        return obj.order_total


@admin.register(Access)
class AccessAdmin(BoundedSearch, admin.ModelAdmin):
    list_display = ("user", "book", "count", "first_seen", "last_seen")
    list_select_related = ("user", "book")
    search_fields = ("user__username", "book__product", "book__title")
    raw_id_fields = ("user", "book")
    date_hierarchy = "last_seen"
    show_full_result_count = False


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ("filename", "started", "finished", "rows")
    readonly_fields = ("filename", "sha256", "started", "finished", "rows", "counts")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
