"""Template context shared by every page of the store."""

from django.core.cache import cache

from .models import Genre


def store(request) -> dict:
    genres = cache.get("bookstore:nav-genres")
    if genres is None:
        genres = list(Genre.objects.values("name", "slug"))
        cache.set("bookstore:nav-genres", genres, 300)
    return {"nav_genres": genres}
