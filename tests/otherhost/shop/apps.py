from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.otherhost.shop"
    label = "shop"
