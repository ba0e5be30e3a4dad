"""Adapters that let other libraries call our explainers: Quantus (``quantus``), Lightning's distributed predict (``dataset``)."""
