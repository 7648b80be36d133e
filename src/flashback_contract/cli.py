"""The ``flashback-contract`` command."""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flashback_contract.mock.frontend import MAX_DELAY_MS
from flashback_contract.mock.seed import StartingData
from flashback_contract.mock.settings import Settings
from flashback_contract.store import DEFAULT_STORE_URL

# How `serve --workers N` hands its settings and log level to the worker processes it starts.
WORKER_SETTINGS_ENV = "FLASHBACK_WORKER_SETTINGS"
WORKER_LOG_LEVEL_ENV = "FLASHBACK_WORKER_LOG_LEVEL"

# The banner lists this many static tokens; the control API's export has them all.
MAX_TOKENS_SHOWN = 10


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bind the server's socket before anything is printed, so a busy port fails first."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _banner(
    url: str, settings: Settings, starting: StartingData, seed_name: str, reset: bool
) -> list[str]:
    lines = [f"Flashback mock serving on {url}", f"Store: {settings.store_url}"]
    if not starting.seeded:
        lines.append(
            f"Data: kept existing data ({starting.kept_keys} keys); "
            "`--reset` or `POST /__mock/reset` to start over"
            + (f" (both load {seed_name}, which was not loaded now)" if settings.seed_file else "")
        )
    else:
        lines.append(f"Data: {'reset to' if reset else 'seeded from'} {seed_name}")
    lines.append(f"Contract: {url}/openapi.yaml, Swagger UI: {url}/ui/, index: {url}/")
    cors = ", ".join(settings.cors_origins) if settings.cors else "off"
    control = "control token required" if settings.control_token else "loopback clients only"
    lines.append(f"CORS: {cors}; mock control: {url}/__mock/ ({control})")
    lines.append(
        f"Sessions: {url}/__session/NAME/... or X-Mock-Session: NAME (at most "
        f"{settings.max_sessions}, idle ones expire after {settings.session_ttl_seconds} s)"
    )
    injected = []
    if settings.delay_ms:
        injected.append(f"every operation delayed {settings.delay_ms} ms")
    if settings.fail_rate:
        injected.append(f"{settings.fail_rate:.0%} of requests answered with the documented 500")
    if injected:
        lines.append("Injected: " + "; ".join(injected))
    if starting.tokens:
        lines.append("Tokens (Authorization: Bearer TOKEN):")
        shown = starting.tokens[:MAX_TOKENS_SHOWN]
        lines += [f"  {token:<20} {user} ({org}, {role})" for user, org, role, token in shown]
        if len(starting.tokens) > len(shown):
            lines.append(f"  ... and {len(starting.tokens) - len(shown)} more (GET /__mock/state)")
    lines.append("Press Ctrl+C to stop.")
    return lines


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from flashback_contract.mock.access_log import configure_logging
    from flashback_contract.mock.app import create_app
    from flashback_contract.mock.seed import SeedError, prepare_store, read_seed
    from flashback_contract.store import StoreUrlError, open_store
    from flashback_contract.store.versioning import SchemaVersionError

    if not 0.0 <= args.fail_rate <= 1.0:
        print("flashback-contract: --fail-rate is a share, from 0 to 1", file=sys.stderr)
        return 2
    if not 0 <= args.delay_ms <= MAX_DELAY_MS:
        print(f"flashback-contract: --delay-ms is 0 to {MAX_DELAY_MS}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("flashback-contract: --workers is 1 or more", file=sys.stderr)
        return 2
    if args.max_sessions < 0 or args.session_ttl < 1 or args.journal_size < 0:
        print(
            "flashback-contract: --max-sessions and --journal-size are 0 or more, "
            "--session-ttl 1 or more",
            file=sys.stderr,
        )
        return 2
    settings = Settings.from_env(
        store_url=args.store,
        seed_file=args.seed,
        control_token=args.control_token,
        cors=not args.no_cors,
        cors_origins=tuple(args.cors_origin) or None,
        cors_headers=tuple(args.cors_header),
        delay_ms=args.delay_ms,
        fail_rate=args.fail_rate,
        max_body_bytes=args.max_body_bytes,
        max_import_bytes=args.max_import_bytes,
        log_format=args.log_format,
        max_sessions=args.max_sessions,
        session_ttl_seconds=args.session_ttl,
        journal_size=args.journal_size,
    )
    configure_logging(args.log_level)
    if args.workers > 1 and settings.store_url.startswith("memory://"):
        print(
            f"flashback-contract: --workers {args.workers} needs a store the workers share: "
            "memory:// lives inside one process. Use --store sqlite:///FILE or "
            "--store postgresql://..., or one worker.",
            file=sys.stderr,
        )
        return 2
    try:
        store = open_store(settings.store_url)
        seed = read_seed(settings.seed_file)
    except (SeedError, StoreUrlError, SchemaVersionError, OSError) as exc:
        print(f"flashback-contract: {exc}", file=sys.stderr)
        return 2
    try:
        sock = _listening_socket(args.host, args.port)
    except OSError as exc:
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
        print(
            f"flashback-contract: port {args.port} on {args.host} {reason}: stop the other "
            f"server or choose another port with --port (make serve ARGS='--port 9000')",
            file=sys.stderr,
        )
        return 3
    with sock:
        try:
            starting = prepare_store(store, settings.seed_file, reset=args.reset, data=seed)
            del seed  # parsed once; a large seed need not stay in memory
            # Workers build their own app (and open their own store) in their own process.
            app = create_app(settings, store=store) if args.workers == 1 else None
        except (SeedError, OSError) as exc:
            print(f"flashback-contract: {exc}", file=sys.stderr)
            return 2
        url = f"http://{args.host}:{args.port}"
        seed_name = str(settings.seed_file) if settings.seed_file else "the demo fixture"
        print("\n".join(_banner(url, settings, starting, seed_name, args.reset)), flush=True)
        # uvicorn shuts down gracefully on SIGINT and SIGTERM, then re-raises the signal to
        # the handler it found; with this one the process ends normally, with status 0.
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, lambda *_: None)
        if app is not None:
            # The app writes its own access line (access_log.py): uvicorn's is off.
            config = uvicorn.Config(
                app, host=args.host, port=args.port, log_level=args.log_level, access_log=False
            )
            freeze_startup_objects()
            uvicorn.Server(config).run(sockets=[sock])
        else:
            _serve_workers(args, settings, sock)
    print("Stopped.", flush=True)
    return 0


def freeze_startup_objects() -> None:
    """Keep what start-up built (the contract, validators, a large seed) out of the collector.

    It lives as long as the server. Left in view, every full collection walks all of it and
    the request that triggers one waits tens of milliseconds: most of the read's p99 in
    bench/RESULTS.md.
    """
    gc.collect()
    gc.freeze()


def _serve_workers(args: argparse.Namespace, settings: Settings, sock: socket.socket) -> None:
    """Run ``args.workers`` worker processes on the bound socket until SIGINT or SIGTERM.

    uvicorn's supervisor starts them, restarts one that dies, and on a signal stops them all
    gracefully before it returns.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ[WORKER_SETTINGS_ENV] = settings.to_json()
    os.environ[WORKER_LOG_LEVEL_ENV] = args.log_level
    config = uvicorn.Config(
        "flashback_contract.cli:worker_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )
    Multiprocess(config, sockets=[sock]).run()


def worker_app() -> Any:
    """The app of one ``serve --workers N`` worker process: its parent's settings and logging."""
    from flashback_contract.mock.access_log import configure_logging
    from flashback_contract.mock.app import create_app

    _process_logging()
    configure_logging(os.environ[WORKER_LOG_LEVEL_ENV])
    app = create_app(Settings.from_json(os.environ[WORKER_SETTINGS_ENV]))
    freeze_startup_objects()
    return app


def _node_sign(args: argparse.Namespace) -> int:
    import json

    from flashback_contract.domain import iso, utcnow
    from flashback_contract.signing import signed

    timestamp: str | int = args.timestamp or iso(utcnow())
    # Digits are epoch seconds, sent (and signed) as a JSON integer; anything else is RFC 3339.
    if isinstance(timestamp, str) and timestamp.isascii() and timestamp.isdigit():
        timestamp = int(timestamp)
    body: dict[str, object] = {"ip": args.ip, "timestamp": timestamp}
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


def _proxy(args: argparse.Namespace) -> int:
    import uvicorn

    from flashback_contract.conformance.proxy import SERVER_OPTIONS, ProxyOptions, create_proxy
    from flashback_contract.conformance.report import REPORT_SUFFIXES
    from flashback_contract.contract import read_spec

    for report in args.report:
        if report.suffix not in REPORT_SUFFIXES:
            print(f"flashback-contract: --report {report}: use .md or .json", file=sys.stderr)
            return 2
    try:
        spec = read_spec(args.spec)
        options = ProxyOptions(
            upstream=args.upstream,
            strict=args.strict,
            timeout=args.timeout,
            cors=not args.no_cors,
            cors_origins=tuple(args.cors_origin) or ("*",),
            cors_headers=tuple(args.cors_header),
        )
        proxy = create_proxy(options, spec, record=args.record is not None)
    except (OSError, ValueError) as exc:
        print(f"flashback-contract: {exc}", file=sys.stderr)
        return 2

    # One line per exchange at info; --log-level warning keeps violations and failures only.
    logging.getLogger("flashback_contract.proxy").setLevel(args.log_level.upper())
    url = f"http://{args.host}:{args.port}"
    print(f"Contract proxy on {url} -> {args.upstream}", end="")
    print(" (strict: violating exchanges are refused)" if args.strict else "")
    print(f"Report while running: {url}/__proxy/report (JSON), ?format=md (Markdown)")
    print("Press Ctrl+C to stop and write the report.", flush=True)
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: None)
    uvicorn.run(
        proxy.app, host=args.host, port=args.port, log_level=args.log_level, **SERVER_OPTIONS
    )
    status = proxy.finish(args.report, args.junit, args.record)
    report = proxy.report
    print(
        f"{report.calls} call(s), {len(report.operations)} operation(s), "
        f"{report.violations} violation(s)."
    )
    for path in [*args.report, *([args.junit] if args.junit else [])]:
        print(f"Report: {path}")
    if args.record is not None and proxy.recorder is not None:
        print(f"Recorded seed: {args.record} (serve --seed {args.record}); tokens:")
        for org in proxy.recorder.seed()["organizations"]:
            print(f"  {proxy.recorder.token(org['id']):<30} OWNER of {org['id']}")
    return status


def _token(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from flashback_contract.domain import utcnow
    from flashback_contract.mock import tokens
    from flashback_contract.mock.seed import SeedError, seed_if_empty
    from flashback_contract.store import StoreUrlError, open_store
    from flashback_contract.store.versioning import SchemaVersionError

    settings = Settings.from_env(store_url=args.store, seed_file=args.seed)
    try:
        store = open_store(settings.store_url)
        # The same store `serve` would use, seeded the same way if it is new.
        seed_if_empty(store, settings.seed_file)
    except (SeedError, StoreUrlError, SchemaVersionError, OSError) as exc:
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

    serve = commands.add_parser(
        "serve",
        help="serve the stateful mock",
        description=(
            "Serve the stateful mock of the Flashback API, routed by openapi.yaml: the contract's "
            "operations with the demo data (or --seed), Swagger UI at /ui/ and the mock control "
            "API at /__mock/. An existing store's data is kept unless --reset. Exit status: 0 "
            "stopped (Ctrl+C or SIGTERM), 2 an option, seed or store was refused, 3 the port "
            "cannot be used."
        ),
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the store (SQLite or PostgreSQL; default 1)",
    )
    serve.add_argument(
        "--store",
        default=None,
        help=f"memory://, sqlite:///PATH or postgresql://... (default $FLASHBACK_STORE, "
        f"else {DEFAULT_STORE_URL})",
    )
    serve.add_argument(
        "--seed",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML seed file (default: the demo fixture), loaded into an empty store, with "
        "--reset, and by POST /__mock/reset",
    )
    serve.add_argument(
        "--reset",
        action="store_true",
        help="replace the store's data with the seed before serving (default: keep it)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="server log level (default info): one access line per request; debug adds the "
        "frameworks' own lines",
    )
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="access log lines: short text (default) or one JSON object per line",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow this browser origin (repeatable; default: any origin)",
    )
    serve.add_argument(
        "--cors-header",
        action="append",
        default=[],
        metavar="HEADER",
        help="also allow this request header in CORS preflights (repeatable)",
    )
    serve.add_argument("--no-cors", action="store_true", help="send no CORS headers")
    serve.add_argument(
        "--control-token",
        metavar="TOKEN",
        help="require this Bearer token on /__mock/ (default $FLASHBACK_CONTROL_TOKEN, else "
        "loopback clients only)",
    )
    serve.add_argument(
        "--delay-ms",
        type=int,
        default=0,
        metavar="N",
        help=f"milliseconds added to every operation (0 to {MAX_DELAY_MS}; default 0)",
    )
    serve.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of requests answered with the documented 500 (0 to 1; default 0)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="larger request bodies are refused with 413 (default 1048576)",
    )
    serve.add_argument(
        "--max-import-bytes",
        type=int,
        default=None,
        help="the same bound for a seed sent to POST /__mock/state (default 67108864)",
    )
    serve.add_argument(
        "--max-sessions",
        type=int,
        default=Settings.max_sessions,
        help="sessions (/__session/NAME/ or X-Mock-Session) alive at once (default %(default)s)",
    )
    serve.add_argument(
        "--session-ttl",
        type=int,
        default=Settings.session_ttl_seconds,
        metavar="SECONDS",
        help="an idle session expires after this long (default %(default)s)",
    )
    serve.add_argument(
        "--journal-size",
        type=int,
        default=Settings.journal_size,
        help="requests kept per session by GET /__mock/requests; 0 turns the journal off "
        "(default %(default)s)",
    )
    serve.set_defaults(func=_serve)

    node_sign = commands.add_parser(
        "node-sign",
        help="print a signed POST /register (or /unregister) body for a bridge node",
        description=(
            "Print a POST /register body (or, with --unregister, a POST /unregister body) signed "
            "with an organization private key (PEM), ready for curl -d @FILE. --provider, "
            "--region, --version, --status and --services are the registration's fields; an "
            "unregistration carries only ip, timestamp and id_org."
        ),
    )
    node_sign.add_argument("--key", type=Path, required=True, help="organization private key")
    node_sign.add_argument("--ip", required=True, help="the node's IP (its id)")
    node_sign.add_argument("--org", help="id_org: the organization whose key signs")
    node_sign.add_argument(
        "--provider",
        default="S3",
        choices=["S3", "GCS", "AZURE"],
        help="the node's storage provider (default S3)",
    )
    node_sign.add_argument(
        "--region",
        default="us-east-1",
        help="the provider region the node serves, free text (default us-east-1)",
    )
    node_sign.add_argument(
        "--version",
        default="1.0.0",
        help="the node software's version, free text (default 1.0.0)",
    )
    node_sign.add_argument(
        "--status",
        default="ONLINE",
        help="the node's status as it reports it, free text; the TypeScript client sends"
        " ONLINE, OFFLINE or DISCONNECTED (default ONLINE)",
    )
    node_sign.add_argument("--services", type=int, help="nodeServices bit field")
    node_sign.add_argument(
        "--timestamp",
        help="RFC 3339 date-time, or digits for epoch seconds (default: now, RFC 3339)",
    )
    node_sign.add_argument(
        "--unregister", action="store_true", help="sign a POST /unregister body instead"
    )
    node_sign.set_defaults(func=_node_sign)

    token = commands.add_parser(
        "token",
        help="print a JWT access token for a user of the store",
        description=(
            "Print an HS256 JWT the mock on the same store (or secret) accepts: a SQLite file "
            "or PostgreSQL database it shares, or the same FLASHBACK_JWT_SECRET. A mock on "
            "memory:// keeps its secret in its own process: ask that mock instead, with "
            'POST /__mock/token {"user": "user-acme-admin", "ttl": 3600}.'
        ),
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
    check.add_argument(
        "--max-examples", type=int, default=20, help="cases per operation and phase (default 20)"
    )
    check.add_argument("--workers", type=int, default=1, help="parallel workers (default 1)")
    check.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="per request (default 10)",
    )
    check.set_defaults(func=_check)

    proxy = commands.add_parser(
        "proxy",
        help="forward real traffic to a backend, checking it against the contract",
        description=(
            "Forward every request to UPSTREAM unchanged and its answer back unchanged, adding "
            "X-Contract-Violations where the exchange disagrees with the contract. On Ctrl+C or "
            "SIGTERM, write the reports. Exit status: 0 no violation seen, 1 violations, "
            "2 usage."
        ),
    )
    proxy.add_argument("--upstream", required=True, help="the backend, e.g. https://staging...")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8081)
    proxy.add_argument("--spec", type=Path, help="contract file (default: the bundled one)")
    proxy.add_argument(
        "--strict",
        action="store_true",
        help="refuse violating requests (400) and replace violating responses (502)",
    )
    proxy.add_argument(
        "--report",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="write the report on exit: FILE.md Markdown, FILE.json JSON (repeatable)",
    )
    proxy.add_argument("--junit", type=Path, metavar="FILE", help="JUnit XML, a case per operation")
    proxy.add_argument(
        "--record", type=Path, metavar="FILE", help="write a seed file for serve --seed on exit"
    )
    proxy.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    proxy.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN", help="as for serve"
    )
    proxy.add_argument(
        "--cors-header",
        action="append",
        default=[],
        metavar="HEADER",
        help="also allow this request header in preflights (repeatable), as for serve",
    )
    proxy.add_argument("--no-cors", action="store_true", help="send no CORS headers")
    proxy.add_argument("--log-level", default="info")
    proxy.set_defaults(func=_proxy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _process_logging()
    result: int = args.func(args)
    return result


def _process_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Its own progress lines are noise; the store logs what a migration changed.
    logging.getLogger("alembic").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
