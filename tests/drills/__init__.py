"""Fault drills: the running system on a private broker and database, faults injected mid-batch (issue 13)."""
