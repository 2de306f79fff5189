"""The store's tables refuse what a bookstore cannot have."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from bookstore.models import Access, Author, Book, Genre, OrderLine
from tests.factories import AccessFactory, BookFactory, OrderFactory, UserFactory

pytestmark = pytest.mark.django_db


def refuses(fn) -> bool:
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


def test_product_id_is_unique_and_not_empty():
    BookFactory(product="2345")
    assert refuses(lambda: Book.objects.create(product="2345", title="Copy"))
    assert refuses(lambda: Book.objects.create(product="", title="No id"))


def test_price_may_be_unknown_but_not_negative():
    assert BookFactory(price=None).price is None
    assert refuses(lambda: BookFactory(price=Decimal("-1.00")))


def test_author_and_genre_names_are_unique_ignoring_case():
    Author.objects.create(name="Ursula K. Le Guin")
    assert refuses(lambda: Author.objects.create(name="ursula k. le guin"))
    Genre.objects.create(name="Fantasy", slug="fantasy")
    assert refuses(lambda: Genre.objects.create(name="FANTASY", slug="fantasy-2"))
    assert refuses(lambda: Genre.objects.create(name="Fantasy fiction", slug="fantasy"))


def test_order_line_quantity_is_positive_and_price_not_negative():
    order, book = OrderFactory(), BookFactory()
    assert refuses(lambda: OrderLine.objects.create(order=order, book=book, quantity=0, unit_price=1))
    assert refuses(lambda: OrderLine.objects.create(order=order, book=book, quantity=1, unit_price=-1))
    line = OrderLine.objects.create(order=order, book=book, quantity=3, unit_price=Decimal("2.50"))
    assert line.subtotal == Decimal("7.50")
    assert order.total == Decimal("7.50")


def test_one_access_row_per_customer_and_book():
    access = AccessFactory()
    assert refuses(lambda: Access.objects.create(user=access.user, book=access.book))
    assert refuses(lambda: AccessFactory(count=0))


def test_last_seen_is_not_before_first_seen():
    now = timezone.now()
    assert refuses(lambda: AccessFactory(first_seen=now, last_seen=now - timedelta(seconds=1)))


def test_a_book_with_sales_cannot_be_deleted_but_views_go_with_it():
    book = BookFactory()
    AccessFactory(book=book)
    book.delete()
    assert Access.objects.count() == 0
    sold = BookFactory()
    OrderLine.objects.create(order=OrderFactory(), book=sold, quantity=1, unit_price=1)
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        sold.delete()


def test_deleting_a_customer_deletes_their_orders_and_views():
    user = UserFactory()
    OrderLine.objects.create(order=OrderFactory(user=user), book=BookFactory(), quantity=1, unit_price=1)
    AccessFactory(user=user)
    user.delete()
    assert OrderLine.objects.count() == 0 and Access.objects.count() == 0
