"""URLs of the demo bookstore."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("books/", views.book_list, name="book_list"),
    path("books/<str:product>/", views.book_detail, name="book_detail"),
    path("books/<str:product>/buy/", views.buy, name="buy"),
    path("orders/", views.my_orders, name="my_orders"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("recommendations/", include("recommendations.urls")),
    path("admin/", admin.site.urls),
]
