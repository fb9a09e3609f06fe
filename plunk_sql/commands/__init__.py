"""CLI subcommands: each module here defines `register(subparsers)` and is
discovered by plunk_sql.cli, so adding a command never edits a shared list."""
