"""CLI subcommands: each module here defines `register(subparsers)`; plunk_sql.cli lists
them in COMMAND_MODULES. A module imports only the core at module level (see cli.py)."""
