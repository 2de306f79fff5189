"""A shop that is not a bookstore: products with SKUs, purchases, page views."""

from django.conf import settings
from django.db import models


class Category(models.Model):
    title = models.CharField(max_length=50)


class Label(models.Model):
    text = models.CharField(max_length=50)


class Product(models.Model):
    sku = models.CharField(max_length=20, primary_key=True)
    name = models.CharField(max_length=100)
    category = models.ForeignKey(Category, null=True, on_delete=models.SET_NULL)
    labels = models.ManyToManyField(Label, blank=True)
    cost = models.FloatField(null=True)
    released = models.DateField(null=True)
    in_stock = models.BooleanField(default=True)

    def __str__(self):
        return self.name


class Purchase(models.Model):
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    amount = models.PositiveIntegerField(default=1)
    at = models.DateTimeField()


class PageView(models.Model):
    visitor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    hits = models.PositiveIntegerField(default=1)
    when = models.DateTimeField()
