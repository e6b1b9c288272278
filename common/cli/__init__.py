"""The `dicomflow` console script: the brief's exercises from a command line.

Every `cmd_*.py` module here registers its subcommands with `register(subparsers)`; `main`
finds them by name, so adding a command group means adding one module and nothing else.
"""
