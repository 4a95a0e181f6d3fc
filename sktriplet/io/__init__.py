"""Saving, loading and exporting fitted models."""
