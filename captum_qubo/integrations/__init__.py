"""Adapters that let other evaluation libraries call our explainers (Quantus)."""
