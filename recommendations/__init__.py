"""Hybrid (LightFM) recommendations for a Django shop: trained in Celery, served by template tags."""

__version__ = "0.1.0"
