"""A second click on "Buy" shows the first order instead of making another one.

Simultaneous clicks are proven in tests/reliability/test_double_buy.py; these are the rules.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from bookstore.models import Order, OrderLine
from bookstore.services import REPEAT_BUY_WINDOW, place_order
from tests.factories import BookFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_second_click_gets_the_first_order():
    customer, book = UserFactory(), BookFactory()
    now = timezone.now()
    first = place_order(customer, [book], now=now)
    again = place_order(customer, [book], now=now + timedelta(seconds=2))
    assert again.pk == first.pk
    assert Order.objects.count() == 1 and OrderLine.objects.count() == 1


def test_a_buy_after_the_window_is_a_new_order():
    customer, book = UserFactory(), BookFactory()
    now = timezone.now()
    first = place_order(customer, [book], now=now)
    later = place_order(customer, [book], now=now + REPEAT_BUY_WINDOW + timedelta(seconds=1))
    assert later.pk != first.pk and Order.objects.filter(user=customer).count() == 2


def test_other_books_and_other_customers_are_other_orders():
    customer, book, other_book = UserFactory(), BookFactory(), BookFactory()
    now = timezone.now()
    first = place_order(customer, [book], now=now)
    assert place_order(customer, [other_book], now=now).pk != first.pk
    assert place_order(customer, [book, other_book], now=now).pk != first.pk
    assert place_order(UserFactory(), [book], now=now).pk != first.pk
    assert Order.objects.count() == 4
    # The same books in another order of the list are the same purchase.
    assert place_order(customer, [other_book, book], now=now).lines.count() == 2
    assert Order.objects.count() == 4


def test_the_second_post_shows_the_first_order(client):
    customer, book = UserFactory(), BookFactory(title="Dune", price=Decimal("9.99"))
    client.force_login(customer)
    url = reverse("buy", args=[book.product])
    client.post(url)
    response = client.post(url, follow=True)
    order = Order.objects.get(user=customer)
    assert response.redirect_chain == [(reverse("my_orders"), 302)]
    page = response.content.decode()
    assert f"Order #{order.pk}" in page and page.count('class="order"') == 1
