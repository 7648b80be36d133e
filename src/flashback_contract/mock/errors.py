"""One error path: every non-2xx response is the documented ``{"success": false, "message"}``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import flask
import starlette.exceptions
from connexion import FlaskApp
from connexion.context import _operation
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from flashback_contract.contract import allowed_methods
from flashback_contract.web import envelope, json_text

log = logging.getLogger(__name__)

INTERNAL_SERVER_ERROR = "Internal server error"
MAX_MESSAGE_CHARS = 300


class ApiError(Exception):
    """A documented error: its status and the message the body carries.

    Node operations also document a machine-readable ``errorCode``.
    """

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


def _body(message: str, error_code: str | None = None) -> bytes:
    return json_text(envelope(message, error_code)).encode("utf-8")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _problem_message(exc: ProblemException) -> str:
    detail = exc.detail if isinstance(exc.detail, str) else None
    # jsonschema appends the whole failing schema after a blank line: keep the sentence.
    message = (detail or exc.title or _reason(exc.status)).split("\n\n", 1)[0]
    # Validator messages quote the offending value: a megabyte string is not echoed back whole.
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 15] + "... (truncated)"
    return message


def _middleware_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        content_type="application/json",
        body=_body(message),
        headers=headers or {},
    )


def _on_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, ProblemException)
    if exc.status >= 500:
        log.error("request failed: %r", exc)
        return _middleware_response(exc.status, INTERNAL_SERVER_ERROR)
    return _middleware_response(exc.status, _problem_message(exc), dict(exc.headers or {}))


def _allow_header(path: str) -> dict[str, str]:
    # connexion routes one method per route, so its own 405 names a single method.
    return {"Allow": ", ".join(allowed_methods(path))}


def _on_http_exception(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, starlette.exceptions.HTTPException)
    if exc.status_code >= 500:
        return _middleware_response(exc.status_code, INTERNAL_SERVER_ERROR)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers.update(_allow_header(request.url.path))
    message = exc.detail if exc.detail and "<" not in exc.detail else _reason(exc.status_code)
    return _middleware_response(exc.status_code, message, headers)


def _on_unexpected(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    if isinstance(exc, UnicodeDecodeError):
        return _middleware_response(400, "Request body is not valid UTF-8")
    log.error("unhandled error", exc_info=exc)
    return _middleware_response(500, INTERNAL_SERVER_ERROR)


def _flask_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
) -> Any:
    response = flask.Response(
        _body(message, error_code), status=status, mimetype="application/json"
    )
    response.headers.update(headers or {})
    return response


def install_error_handlers(app: FlaskApp) -> None:
    """Route connexion's, werkzeug's and our own errors into the documented envelope."""
    app.add_error_handler(ProblemException, _on_problem)
    app.add_error_handler(starlette.exceptions.HTTPException, _on_http_exception)
    app.add_error_handler(Exception, _on_unexpected)

    flask_app: flask.Flask = app.app

    @flask_app.before_request
    def _outside_the_contract() -> Any:
        # connexion's router does not match a path parameter holding a newline, but
        # Flask's does: such a request is no operation. Its parameter is invalid (400).
        if _operation.get(None) is None:
            if allowed_methods(flask.request.path):
                return _flask_response(400, "Invalid path parameter")
            return _flask_response(404, _reason(404))
        return None

    @flask_app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Any:
        return _flask_response(exc.status, exc.message, error_code=exc.error_code)

    @flask_app.errorhandler(MethodNotAllowed)
    def _method_not_allowed(exc: MethodNotAllowed) -> Any:
        # Handled here: FlaskApp's generic conversion would drop the Allow header.
        return _flask_response(405, _reason(405), _allow_header(flask.request.path))

    @flask_app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if status >= 500:
            return _flask_response(status, INTERNAL_SERVER_ERROR)
        return _flask_response(status, _reason(status))

    @flask_app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.error("unhandled error", exc_info=exc)
        return _flask_response(500, INTERNAL_SERVER_ERROR)
