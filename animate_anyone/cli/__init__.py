"""``animate-anyone``: one command, a subcommand per stage (the application layer, with ``flows``).

Exit codes: 0 everything succeeded; 1 the run finished but some items failed (they are in the
``failures`` table, and running the same command again retries them); 2 nothing ran: a bad
option, configuration or input (the message says which).

The configuration is loaded and checked before anything starts. Flows run against
``PREFECT_API_URL`` when it is set, else against a temporary Prefect server that this command
starts and that dies with it (``flows/server.py``). Prefect is imported only by the subcommands
that run flows, so ``query``, ``puppets`` and the library work without an orchestrator.
"""
# the commands, in the order `--help` lists them (each module registers its own on ``app``)
from animate_anyone.cli import data, models, ops, web  # noqa: E402,F401
from animate_anyone.cli.app import NATIVE_LINE, app, main

__all__ = ["NATIVE_LINE", "app", "main"]
