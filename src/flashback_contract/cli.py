"""The ``flashback-contract`` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from flashback_contract.settings import Settings
from flashback_contract.store import DEFAULT_STORE_URL


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from flashback_contract.app import create_app
    from flashback_contract.seed import SeedError, read_seed
    from flashback_contract.store import StoreUrlError

    settings = Settings.from_env(store_url=args.store, seed_file=args.seed)
    try:
        seed = read_seed(settings.seed_file)
        app = create_app(settings)
    except (SeedError, StoreUrlError, OSError) as exc:
        print(f"flashback-contract: {exc}", file=sys.stderr)
        return 2

    url = f"http://{args.host}:{args.port}"
    print(f"Flashback mock serving on {url}")
    print(f"Store: {settings.store_url}")
    print("Tokens (Authorization: Bearer TOKEN):")
    for user in seed.get("users", []):
        if user.get("token"):
            print(f"  {user['token']:<20} {user['id']} ({user['org']}, {user['role']})")
    print("Press Ctrl+C to stop.", flush=True)
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then re-raises the signal to
    # the handler it found; with this one the process ends normally, with status 0.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: None)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    print("Stopped.", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flashback-contract",
        description="The Flashback API contract: a stateful mock and a conformance harness.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the stateful mock")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--store",
        default=None,
        help=f"memory://, sqlite:///PATH or postgresql://... (default {DEFAULT_STORE_URL})",
    )
    serve.add_argument(
        "--seed", type=Path, default=None, help="YAML seed file (default: the demo fixture)"
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
