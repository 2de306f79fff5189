"""A double click on "Buy" makes one order: fifty simultaneous buys of one book by one
customer, each in its own thread with its own database connection, leave exactly one order,
and every click is answered with that order.

On PostgreSQL the threads run at once in this process.  SQLite is proven on a database file
configured as the site configures it (WAL, ``BEGIN IMMEDIATE``, a lock timeout), in a process
of its own: the in-memory test database shares one cache between threads, whose table locks
fail at once ("database table is locked") where a real SQLite file waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from bookstore.models import Order, OrderLine
from bookstore.services import place_order
from tests.factories import BookFactory, UserFactory
from tests.reliability.conftest import at_once

ROOT = Path(__file__).resolve().parents[2]
CLICKS = 50


def check_simultaneous_buys() -> None:
    customer, book = UserFactory(), BookFactory()
    results = at_once(CLICKS, lambda i: place_order(customer, [book]))
    errors = [r for r in results if not isinstance(r, Order)]
    assert not errors, errors[:3]
    assert Order.objects.filter(user=customer).count() == 1, "one order"
    assert OrderLine.objects.filter(order__user=customer).count() == 1
    assert {order.pk for order in results} == {Order.objects.get(user=customer).pk}, "each click gets that order"


def check_simultaneous_buy_posts() -> None:
    """The same through the page: fifty signed-in POSTs to the buy URL at once."""
    customer, book = UserFactory(), BookFactory()
    clients = [Client() for _ in range(CLICKS)]
    for client in clients:
        client.force_login(customer)
    url = reverse("buy", args=[book.product])

    responses = at_once(CLICKS, lambda i: clients[i].post(url))
    errors = [r for r in responses if isinstance(r, Exception) or r.status_code != 302]
    assert not errors, errors[:3]
    assert {r.url for r in responses} == {reverse("my_orders")}
    order = Order.objects.get(user=customer)
    assert list(order.lines.values_list("book_id", "quantity")) == [(book.pk, 1)]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_buys_make_one_order(postgres):
    check_simultaneous_buys()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_buy_posts_make_one_order(postgres):
    check_simultaneous_buy_posts()


SQLITE_RUN = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.reliability import test_double_buy as t
t.check_simultaneous_buys()
t.check_simultaneous_buy_posts()
print("one order each")
"""


def test_fifty_simultaneous_buys_make_one_order_on_a_sqlite_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CONN_MAX_AGE"}}
    env.update({
        "DJANGO_SETTINGS_MODULE": "bookstore.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'site.sqlite3'}",
        "DEBUG": "1",
        "ALLOWED_HOSTS": "testserver",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "RECOMMENDATIONS_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    })  # fmt: skip
    run = subprocess.run([sys.executable, "-c", SQLITE_RUN], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0 and "one order each" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
