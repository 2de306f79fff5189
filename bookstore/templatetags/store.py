"""Small template helpers of the store's pages."""

import zlib

from django import template

register = template.Library()


@register.filter
def cover_hue(book) -> int:
    """A stable hue (0–359) for a book's drawn cover, from its product id."""
    return zlib.crc32(str(getattr(book, "product", book)).encode()) % 360
