"""`loyalty-core` command line: serve, migrate (others add verify, keys, ...)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Sequence

from loyalty_core.settings import Settings
from server import logs

log = logging.getLogger(__name__)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from server.app import serve

    asyncio.run(serve(settings))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from loyalty_core.store import embedded, migrate

    pg = None
    url = settings.database_url
    if not url:
        pg = embedded.start(settings.data_dir)
        url = pg.url
    try:
        applied = asyncio.run(migrate.migrate(url))
    finally:
        if pg is not None:
            pg.stop()
    log.info("migrations applied: %s", applied or "none pending", extra={"event": "migrated", "applied": applied})
    return 0


# name -> (help, add-arguments, run). Add a subcommand with one line here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {
    "serve": ("run the gRPC server in the foreground (migrates first)", lambda p: None, cmd_serve),
    "migrate": ("apply pending schema migrations and exit", lambda p: None, cmd_migrate),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty-core", description="loyalty-core points-and-discounts engine. "
                                     "Configured by LOYALTY_* environment variables (see README).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _run) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return COMMANDS[args.command][2](settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
