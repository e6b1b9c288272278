"""Consumes jobs, decodes pixel data and computes the image statistics."""
