"""Streams uploads to disk, validates them as DICOM, stores and queues them."""
