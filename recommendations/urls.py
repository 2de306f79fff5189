"""Include with ``path("recommendations/", include("recommendations.urls"))``."""

from django.urls import path

from . import views

app_name = "recommendations"
urlpatterns = [
    path("me/", views.me, name="me"),
    path("similar/<str:key>/", views.similar, name="similar"),
]
