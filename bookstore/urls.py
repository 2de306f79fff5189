"""URLs of the demo bookstore."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter
from django.urls.converters import StringConverter

from . import views
from .models import product_key_problem


class ProductConverter(StringConverter):
    """A product id as the ``<id>`` of ``/books/<id>/``: what ``product_key_problem`` accepts.

    Both ways: ``/books/%00/`` is a 404 before any query (PostgreSQL refuses NUL in text),
    and ``reverse`` raises ``NoReverseMatch`` for a book whose id cannot be a page address
    ("a/b", "." — rows written before the validator, or past it), so pages leave it unlinked.
    """

    def to_python(self, value: str) -> str:
        if problem := product_key_problem(value):
            raise ValueError(problem)
        return value

    to_url = to_python


register_converter(ProductConverter, "product")

urlpatterns = [
    path("", views.home, name="home"),
    path("books/", views.book_list, name="book_list"),
    path("books/<product:product>/", views.book_detail, name="book_detail"),
    path("books/<product:product>/buy/", views.buy, name="buy"),
    path("orders/", views.my_orders, name="my_orders"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("recommendations/", include("recommendations.urls")),
    path("admin/", admin.site.urls),
]
