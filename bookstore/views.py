"""The store's pages: home, book list, book detail (counts the view), buy, my orders."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import BadRequest
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from recommendations.cache import recommendations_for as cached_picks

from .models import Author, Book, Genre, Order, OrderLine
from .services import bestsellers, place_order, record_view

logger = logging.getLogger(__name__)


def home(request: HttpRequest) -> HttpResponse:
    new_books = Book.objects.available().select_related("author").order_by("-created", "-pk")[:12]
    # The box at the top shows the customer's picks, or the popular list (mostly bestsellers)
    # to a visitor: the shelf leaves those books out, so that no list shows twice.  The same
    # cached list the box reads: no query when it is cached.
    try:
        shown, _personal = cached_picks(request.user, 6)
    except Exception:  # the box's own fallback covers it; the shelf just shows everything
        logger.exception("the home page could not read the box's list")
        shown = []
    return render(
        request,
        "bookstore/home.html",
        {"new_books": new_books, "bestsellers": bestsellers(6, exclude=shown)},
    )


# An author's id as the book list takes it: ASCII digits ("²" and "٣" are digits to
# str.isdigit), few enough for a bigint (and for int(), which refuses over 4,300 digits).
AUTHOR_ID = re.compile(r"[0-9]{1,18}")


def _text_param(request: HttpRequest, name: str) -> str:
    """A query parameter; a 400 if it holds NUL, which no form sends, no text column holds,
    and PostgreSQL refuses even in a query's parameters."""
    value = request.GET.get(name, "")
    if "\x00" in value:
        raise BadRequest(f"NUL in the {name!r} parameter")
    return value


def book_list(request: HttpRequest) -> HttpResponse:
    books = Book.objects.available().for_listing()
    genre = author = None
    if slug := _text_param(request, "genre"):
        genre = get_object_or_404(Genre, slug=slug)
        books = books.filter(genres=genre)
    if author_id := _text_param(request, "author"):
        if not AUTHOR_ID.fullmatch(author_id):
            raise Http404("No such author.")
        author = get_object_or_404(Author, pk=author_id)
        books = books.filter(author=author)
    query = _text_param(request, "q").strip()[:100]
    if query:
        books = books.filter(Q(title__icontains=query) | Q(author__name__icontains=query) | Q(product=query))
    sort = request.GET.get("sort", "title")
    ordering = {"title": ("title", "product"), "new": ("-publication_date", "product"), "price": ("price", "product")}
    books = books.order_by(*ordering.get(sort, ordering["title"]))
    page = Paginator(books, settings.BOOKSTORE_PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "bookstore/book_list.html",
        {
            "page": page,
            "genre": genre,
            "author": author,
            "query": query,
            "sort": sort,
            "querystring": params.urlencode(),
        },
    )


def book_detail(request: HttpRequest, product: str) -> HttpResponse:
    book = get_object_or_404(Book.objects.select_related("author").prefetch_related("genres"), product=product)
    if request.user.is_authenticated:
        record_view(request.user, book)
    more_by_author = []
    if book.author_id:
        more_by_author = Book.objects.available().select_related("author").filter(author_id=book.author_id).exclude(pk=book.pk)[:4]
    return render(request, "bookstore/book_detail.html", {"book": book, "more_by_author": more_by_author})


@require_POST
def buy(request: HttpRequest, product: str) -> HttpResponse:
    book = get_object_or_404(Book, product=product)
    if not request.user.is_authenticated:
        # Back to the book after signing in: the buy URL itself only takes POST.
        return redirect_to_login(book.get_absolute_url())
    if not book.available:
        messages.error(request, _("Sorry, “%(title)s” is not available.") % {"title": book})
        return redirect(book)
    order = place_order(request.user, [book])
    messages.success(request, _("Thank you! Order #%(id)s: “%(title)s”.") % {"id": order.pk, "title": book})
    return redirect("my_orders")


@login_required
def my_orders(request: HttpRequest) -> HttpResponse:
    orders = Order.objects.filter(user=request.user).prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("book__author"))
    )
    page = Paginator(orders, 10).get_page(request.GET.get("page"))
    return render(request, "bookstore/my_orders.html", {"page": page})
