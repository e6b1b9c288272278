"""The `dicomflow` console script: the brief's exercises from a command line.

Every `cmd_*.py` module here registers its subcommands with `register(subparsers)`; `main`
finds them by name, so adding a command group means adding one module and nothing else. Name
the module after its command (`cmd_process_json.py` for `process-json`): `main` then imports
only that module to run it. Keep a module's top-level imports light (argparse, `support`) and
import heavy libraries inside its handler, so `--help` stays fast too.
"""
