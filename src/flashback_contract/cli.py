"""The ``flashback-contract`` command."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from flashback_contract.mock.frontend import MAX_DELAY_MS
from flashback_contract.mock.settings import Settings
from flashback_contract.store import DEFAULT_STORE_URL


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from flashback_contract.mock.app import create_app
    from flashback_contract.mock.seed import SeedError, read_seed
    from flashback_contract.store import StoreUrlError

    if not 0.0 <= args.fail_rate <= 1.0:
        print("flashback-contract: --fail-rate is a share, from 0 to 1", file=sys.stderr)
        return 2
    if not 0 <= args.delay_ms <= MAX_DELAY_MS:
        print(f"flashback-contract: --delay-ms is 0 to {MAX_DELAY_MS}", file=sys.stderr)
        return 2
    settings = Settings.from_env(
        store_url=args.store,
        seed_file=args.seed,
        control_token=args.control_token,
        cors=not args.no_cors,
        cors_origins=tuple(args.cors_origin) or None,
        delay_ms=args.delay_ms,
        fail_rate=args.fail_rate,
    )
    try:
        seed = read_seed(settings.seed_file)
        app = create_app(settings)
    except (SeedError, StoreUrlError, OSError) as exc:
        print(f"flashback-contract: {exc}", file=sys.stderr)
        return 2

    url = f"http://{args.host}:{args.port}"
    print(f"Flashback mock serving on {url}")
    print(f"Store: {settings.store_url}")
    print(f"Contract: {url}/openapi.yaml, Swagger UI: {url}/ui/")
    cors = ", ".join(settings.cors_origins) if settings.cors else "off"
    print(f"CORS: {cors}; mock control: {url}/__mock/ ", end="")
    print("(control token required)" if settings.control_token else "(loopback clients only)")
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


def _node_sign(args: argparse.Namespace) -> int:
    import json

    from flashback_contract.domain import iso, utcnow
    from flashback_contract.signing import signed

    body: dict[str, object] = {
        "ip": args.ip,
        "timestamp": args.timestamp or iso(utcnow()),
    }
    if not args.unregister:
        body.update(
            provider=args.provider, region=args.region, version=args.version, status=args.status
        )
        if args.services is not None:
            body["nodeServices"] = args.services
    if args.org:
        body["id_org"] = args.org
    try:
        print(json.dumps(signed(body, args.key.read_bytes()), indent=2))
    except (OSError, ValueError, TypeError) as exc:
        print(f"flashback-contract: cannot sign with {args.key}: {exc}", file=sys.stderr)
        return 2
    return 0


def _check(args: argparse.Namespace) -> int:
    from flashback_contract.conformance.check import CheckOptions, check

    options = CheckOptions(
        base_url=args.base_url.rstrip("/"),
        spec=args.spec,
        token=args.token or os.environ.get("FLASHBACK_TOKEN") or None,
        org=args.org,
        repo=args.repo,
        include=args.include,
        exclude=args.exclude,
        allow_destructive=args.allow_destructive,
        seed=args.seed,
        junit=args.junit,
        max_examples=args.max_examples,
        workers=args.workers,
        request_timeout=args.request_timeout,
    )
    return check(options)


def _token(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from flashback_contract.domain import utcnow
    from flashback_contract.mock import tokens
    from flashback_contract.mock.seed import SeedError, seed_if_empty
    from flashback_contract.store import StoreUrlError, open_store

    settings = Settings.from_env(store_url=args.store, seed_file=args.seed)
    try:
        store = open_store(settings.store_url)
        # The same store `serve` would use, seeded the same way if it is new.
        seed_if_empty(store, settings.seed_file)
    except (SeedError, StoreUrlError, OSError) as exc:
        print(f"flashback-contract: {exc}", file=sys.stderr)
        return 2
    with store.transaction() as uow:
        known = uow.user(args.user) is not None
    if not known:
        print(f"flashback-contract: no user {args.user!r} in {settings.store_url}", file=sys.stderr)
        return 2
    secret = tokens.jwt_secret(store, settings.jwt_secret)
    print(tokens.issue(secret, args.user, timedelta(seconds=args.ttl), utcnow()))
    store.close()
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
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow this browser origin (repeatable; default: any origin)",
    )
    serve.add_argument("--no-cors", action="store_true", help="send no CORS headers")
    serve.add_argument(
        "--control-token", help="require this Bearer token on /__mock/ (default: loopback only)"
    )
    serve.add_argument("--delay-ms", type=int, default=0, help="latency added to every operation")
    serve.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        help="share of requests answered with the documented 500 (0 to 1)",
    )
    serve.set_defaults(func=_serve)

    node_sign = commands.add_parser(
        "node-sign",
        help="print a signed POST /register (or /unregister) body for a bridge node",
        description="Sign a node registration body with an organization private key (PEM).",
    )
    node_sign.add_argument("--key", type=Path, required=True, help="organization private key")
    node_sign.add_argument("--ip", required=True, help="the node's IP (its id)")
    node_sign.add_argument("--org", help="id_org: the organization whose key signs")
    node_sign.add_argument("--provider", default="S3", choices=["S3", "GCS", "AZURE"])
    node_sign.add_argument("--region", default="us-east-1")
    node_sign.add_argument("--version", default="1.0.0")
    node_sign.add_argument("--status", default="online")
    node_sign.add_argument("--services", type=int, help="nodeServices bit field")
    node_sign.add_argument("--timestamp", help="RFC 3339 date-time (default: now)")
    node_sign.add_argument(
        "--unregister", action="store_true", help="sign a POST /unregister body instead"
    )
    node_sign.set_defaults(func=_node_sign)

    token = commands.add_parser(
        "token",
        help="print a JWT access token for a user of the store",
        description="Print an HS256 JWT the mock on the same store (or secret) accepts.",
    )
    token.add_argument("--user", required=True, help="user id, e.g. user-acme-admin")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--store", default=None, help="the store `serve` uses")
    token.add_argument("--seed", type=Path, default=None, help="seed file for a new store")
    token.set_defaults(func=_token)

    check = commands.add_parser(
        "check",
        help="check a running server against the contract (schemathesis)",
        description=(
            "Fuzz every operation of the contract against BASE_URL with schemathesis (examples, "
            "coverage, fuzzing, stateful chains; every default check). Read-only unless "
            "--allow-destructive. Exit status: 0 passed, 1 failed checks, 2 usage, "
            "3 could not run."
        ),
    )
    check.add_argument("--base-url", required=True, help="the server to check")
    check.add_argument("--spec", help="contract path or URL (default: the bundled openapi.yaml)")
    check.add_argument("--token", help="Bearer token (default: $FLASHBACK_TOKEN)")
    check.add_argument("--org", help="pin idOrg to this (sandbox) organization")
    check.add_argument("--repo", help="pin repoId to this (sandbox) repository")
    check.add_argument(
        "--include", action="append", default=[], metavar="OPERATION_ID", help="repeatable"
    )
    check.add_argument(
        "--exclude", action="append", default=[], metavar="OPERATION_ID", help="repeatable"
    )
    check.add_argument(
        "--allow-destructive",
        action="store_true",
        help="also send DELETE, POST and PUT (needs --org and --repo off loopback)",
    )
    check.add_argument("--seed", type=int, help="repeat a run")
    check.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    check.add_argument("--max-examples", type=int, default=20)
    check.add_argument("--workers", type=int, default=1)
    check.add_argument("--request-timeout", type=float, default=10.0, metavar="SECONDS")
    check.set_defaults(func=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
