"""`plunk-sql migrate`: install or upgrade the toolkit.

On managed PostgreSQL (RDS, Cloud SQL, Supabase) the migrating user is often
not a superuser and may lack CREATEROLE: migrate then installs everything it
can and prints which roles are missing and the exact statements an
administrator runs (plunk_sql.privilege_gaps()); `plunk-sql doctor` reports
the same until they ran.
"""

from __future__ import annotations

import argparse

from plunk_sql.commands.common import EXIT_OK, CommandFailed, database_url
from plunk_sql.migrate import MigrateRefused, MigrateResult, migrate


def run(args: argparse.Namespace) -> int:
    try:
        result = migrate(
            database_url(args),
            with_plunk_tables=args.with_plunk_tables,
            role_prefix=args.role_prefix,
        )
    except MigrateRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if result.created_plunk_tables:
        print("created Plunk tables")
    if result.applied_migrations:
        print("applied migrations: " + ", ".join(result.applied_migrations))
    else:
        print("migrations: up to date")
    print(f"functions: {len(result.function_files)} files applied")
    print(
        f"roles: {', '.join(result.roles)} (role names are cluster-wide: every database of "
        "this cluster migrated with the same --role-prefix shares them)"
    )
    for line in privilege_report(result):
        print(line)
    if result.cron is not None:
        print(f"sweep: {result.cron.message}")
        for line in result.cron.psql:
            print(f"  {line}")
    return EXIT_OK


def privilege_report(result: MigrateResult) -> list[str]:
    """What of the least-privilege setup is missing, and who runs what (empty when complete)."""
    if not result.privilege_gaps:
        return []
    roles = [s.split()[2] for k, s in result.privilege_gaps if k == "role"]
    lines = ["privileges: INCOMPLETE"]
    if roles:
        lines.append(
            f"  missing roles: {', '.join(roles)} (this user may not create roles); "
            "an administrator (a role with CREATEROLE) runs:"
        )
        lines += [f"    {s};" for k, s in result.privilege_gaps if k == "role"]
        lines.append("  then run `plunk-sql migrate` again: it grants what the roles need.")
    rest = [(k, s) for k, s in result.privilege_gaps if k != "role"]
    if rest:
        lines.append(
            "  not granted yet"
            + (" (they need the roles)" if roles else "")
            + "; the owner of public.emails / plunk_sql (or an administrator) runs:"
        )
        lines += [f"    {s};" for _, s in rest]
    return lines


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "migrate",
        help="install or upgrade the toolkit in the database",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--with-plunk-tables",
        action="store_true",
        help="on an empty database, first create the Plunk tables a campaign send uses",
    )
    p.add_argument(
        "--role-prefix",
        metavar="PREFIX",
        help="name the toolkit's roles PREFIX_worker and PREFIX_operator (default: the stored "
        "prefix, first plunk_sql). Role names are cluster-wide: give each database of a "
        "cluster its own prefix to keep their worker roles apart",
    )
    p.set_defaults(func=run)
