"""The sender's side of dicomflow: the library behind `dicomflow upload`, importable by a lab's own scripts.

One module per concern: `retrying` (the retry policy of every call), and the uploader's modules as they land.
"""
