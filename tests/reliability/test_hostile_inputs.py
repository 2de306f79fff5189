"""Hostile request inputs on every URL of the demo, and product ids that cannot be a page address.

Every page, JSON endpoint and admin list is asked with values a browser never sends but a
scanner does: NUL, a 100 kB value, digits that ``str.isdigit`` accepts and ``int`` refuses,
dot segments, an encoded slash, markup, and bytes that are not UTF-8.  None may answer 5xx.
On the production path this runs on PostgreSQL, which refuses NUL in text even in a query;
on the default path on SQLite, which refuses a LIKE pattern over 50,000 bytes.

Then books whose product id cannot be part of ``/books/<id>/`` ("a/b", "." — rows written
before the validator, or past it with ``update``) must leave every page that lists them
answering 200, the books shown without a link.
"""

from __future__ import annotations

from urllib.parse import quote, urljoin, urlsplit

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from bookstore.models import Book
from recommendations import cache as rec_cache
from recommendations import services
from recommendations.api import popular, recommend_for, similar_to
from tests.factories import UserFactory
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db

# Each value as it travels in a URL, percent-encoded where a browser would encode it; the
# test client decodes a path as a WSGI server does (bytes that are not UTF-8 stay encoded).
HOSTILE = [
    pytest.param("%00", id="nul"),
    pytest.param("x" * 100_000, id="overlong"),
    pytest.param("%C2%B2", id="superscript-two"),
    pytest.param("%D9%A3", id="arabic-indic-three"),
    pytest.param("..%2F", id="dot-dot-slash"),
    pytest.param("%2F", id="encoded-slash"),
    pytest.param("%252F", id="the-text-percent-2F"),
    pytest.param("..", id="dot-dot"),
    pytest.param(".", id="dot"),
    pytest.param("%3Cscript%3Ealert(1)%3C%2Fscript%3E", id="script"),
    pytest.param("%ED%A0%80", id="surrogate-bytes"),
    pytest.param("%FF", id="byte-ff"),
]

PAGE = {200}
SEARCH = {200, 400}  # searched (nothing matches), or refused: NUL
NO_SUCH = {400, 404}  # refused (NUL), or no such genre / author: no filter is dropped silently
MISSING = {404}
# To sign in, or 400 where the way back would be a redirect of over 2,048 characters
# (Django refuses to build one).
TO_SIGN_IN = {302, 400}
ADMIN_LIST = {200, 302}  # the admin answers a lookup it cannot use with a redirect to "?e=1"


@pytest.fixture
def store(settings):
    """The planted store with a live run, so that every list and admin table has rows."""
    fast = {"LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, **fast}
    planted = planted_store(fans=12)
    assert services.retrain(evaluate=False).status == "succeeded"
    return {
        **planted,
        "book": planted["books"]["Alpha"][0],
        "customer": planted["users"]["Alpha"][0],  # has orders and a list of their own
        "staff": UserFactory(username="boss", is_staff=True, is_superuser=True),
    }


def client_for(user=None) -> Client:
    client = Client(raise_request_exception=False)  # a 500 is a status to look at, not an error
    if user is not None:
        client.force_login(user)
    return client


def admin_lists() -> list[str]:
    return [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
        if model._meta.app_label in ("bookstore", "recommendations")
    ]


def requests_for(value: str, book: Book) -> list[tuple[str, str, set[int], str]]:
    """(who, method, expected statuses, path) for every URL of the demo, with ``value`` in
    each of its parameters in turn."""
    anyone = [
        ("GET", PAGE, f"/?q={value}"),
        ("GET", SEARCH, f"/books/?q={value}"),
        ("GET", NO_SUCH, f"/books/?genre={value}"),
        ("GET", NO_SUCH, f"/books/?author={value}"),
        ("GET", PAGE, f"/books/?page={value}"),
        ("GET", PAGE, f"/books/?sort={value}"),
        ("GET", SEARCH, f"/books/?q={value}&genre=alpha&author={book.author_id}&sort={value}&page={value}"),
        ("GET", MISSING, f"/books/{value}/"),
        ("GET", MISSING, f"/books/{book.product}/{value}/"),
        ("POST", MISSING, f"/books/{value}/buy/"),  # no such book, signed in or not
        ("GET", TO_SIGN_IN, f"/orders/?page={value}"),
        ("GET", PAGE, f"/accounts/login/?next={value}"),
        ("GET", PAGE, f"/recommendations/me/?limit={value}"),
        ("GET", MISSING, f"/recommendations/similar/{value}/"),
        ("GET", PAGE, f"/recommendations/similar/{book.product}/?limit={value}"),
    ]
    customer = [
        ("GET", PAGE, f"/?q={value}"),
        ("GET", PAGE, f"/books/{book.product}/?q={value}"),
        ("POST", MISSING, f"/books/{value}/buy/"),
        ("GET", PAGE, f"/orders/?page={value}"),
        ("GET", PAGE, f"/recommendations/me/?limit={value}"),
    ]
    staff = [("GET", ADMIN_LIST, f"{url}?q={value}") for url in admin_lists()]
    # "No such book" (a redirect to the index), or the book: the admin reads "٣" as 3.
    staff.append(("GET", {200, 302, 404}, f"/admin/bookstore/book/{value}/change/"))
    return [("anyone", *r) for r in anyone] + [("customer", *r) for r in customer] + [("staff", *r) for r in staff]


@pytest.mark.parametrize("value", HOSTILE)
def test_no_url_answers_5xx_to_a_hostile_value(value, store):
    clients = {"anyone": client_for(), "customer": client_for(store["customer"]), "staff": client_for(store["staff"])}
    wrong = []
    for who, method, expected, path in requests_for(value, store["book"]):
        status = getattr(clients[who], method.lower())(path).status_code
        if status not in expected:
            wrong.append(f"{who} {method} {path[:100]} → {status}, expected {' or '.join(map(str, sorted(expected)))}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("value", [p.values[0] for p in HOSTILE] + ["//evil.example/", "https:%2F%2Fevil.example"])
def test_signing_in_with_a_hostile_next_stays_on_the_site(value):
    UserFactory(username="reader")
    credentials = {"username": "reader", "password": "secret-pass-123"}
    response = client_for().post(f"/accounts/login/?next={value}", credentials)
    assert response.status_code == 302
    assert urlsplit(urljoin("http://testserver/accounts/login/", response["Location"])).netloc == "testserver"


# Product ids the validator refuses, as rows written before it (or by a host's ``update``).
UNLINKABLE = ["a/b", ".", "..", "back\\slash", "tab\tkey", " padded "]


def test_books_whose_product_id_cannot_be_an_address_leave_every_page_working(store):
    customer, other = store["customer"], store["books"]["Alpha"][5]
    # One book from each list a page shows, renamed after the run: lists are keyed by
    # primary key, so the live run goes on offering them.
    shown_on = {
        "popular": popular(1, exclude=other)[0],
        "new arrivals": Book.objects.order_by("-created", "-pk").exclude(pk=other.pk)[0],
        "books by title": Book.objects.order_by("title", "product").exclude(pk=other.pk)[0],
        "the customer's orders": Book.objects.filter(order_lines__order__user=customer).exclude(pk=other.pk)[0],
        "similar": similar_to(other, 1, exclude=other)[0],
        "the customer's list": recommend_for(customer, 1, exclude=other)[0],
    }
    renamed: dict[int, str] = {}
    for book in shown_on.values():
        renamed.setdefault(book.pk, UNLINKABLE[len(renamed)])
    assert {"a/b", "."} <= set(renamed.values())
    for pk, product in renamed.items():
        Book.objects.filter(pk=pk).update(product=product)  # past the validator, as a host's code may
    rec_cache.catalogue_changed()  # what saving a book would have done
    title = {label: book.title for label, book in shown_on.items()}

    anyone, signed_in = client_for(), client_for(customer)
    pages = [
        (anyone, "/", [title["popular"], title["new arrivals"]]),
        (anyone, "/books/", [title["books by title"]]),
        (anyone, f"/books/?q={quote(title['similar'])}", [title["similar"]]),
        (anyone, other.get_absolute_url(), [title["similar"]]),
        (signed_in, "/", [title["the customer's list"]]),
        (signed_in, "/orders/", [title["the customer's orders"]]),
    ]
    for client, path, titles in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        for t in titles:
            assert t in html, f"{t!r} is not on {path}"
        for product in renamed.values():
            assert f'href="/books/{quote(product)}/' not in html, (path, product)
        assert 'href="/books/./' not in html and 'href="/books/../' not in html and 'href="/books//' not in html

    # The JSON lists name such a book with a null url.
    for client, path in [(anyone, "/recommendations/me/"), (signed_in, "/recommendations/me/"),
                         (anyone, f"/recommendations/similar/{other.product}/")]:  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, path
        items = response.json()["items"]
        assert any(i["product"] in renamed.values() and i["url"] is None for i in items), path
        assert all(i["url"] is None or i["url"].startswith("/books/") for i in items)

    # Their pages cannot be asked for: a 404, never a 500, and never another book's page.
    a_b = next(pk for pk, product in renamed.items() if product == "a/b")
    for path in ["/books/a%2Fb/", "/books/a/b/", "/books/./", "/books/%2E/", "/books/tab%09key/"]:
        assert anyone.get(path).status_code == 404, path
    assert signed_in.post("/books/a%2Fb/buy/").status_code == 404

    # The admin lists them, and offers no "View on site" for them.
    staff = client_for(store["staff"])
    assert staff.get("/admin/bookstore/book/").status_code == 200
    change = staff.get(f"/admin/bookstore/book/{a_b}/change/")
    assert change.status_code == 200 and b"viewsitelink" not in change.content
    assert b"viewsitelink" in staff.get(f"/admin/bookstore/book/{other.pk}/change/").content
