"""What every request passes before routing: the bearer token, the content type and the body size.

:class:`Guard` is ASGI middleware, so it runs before FastAPI reads or parses
a body: a request without the token learns nothing about the schema, and an
oversized body is refused after reading at most the limit. :class:`ApiError`
is the project's error answer, ``{"error": ..., "detail": ...}``, shared with
the routes in :mod:`demoscope.serve.app`.
"""

import hmac

from fastapi.responses import JSONResponse

TOKEN_ENV = "DEMOSCOPE_API_TOKEN"


class ApiError(Exception):
    """An error answer: HTTP status, a short error name, a detail saying what to change, optional headers."""

    def __init__(self, status: int, error: str, detail: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.error, self.detail, self.headers = status, error, detail, headers

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content={"error": self.error, "detail": self.detail},
                            headers=self.headers)


class Guard:
    """ASGI middleware run before routing: bearer token, content type and body size, in that order.

    It runs before FastAPI reads the body, so a request without the token learns nothing about the
    schema, and a huge body is refused after reading at most ``max_body_bytes`` of it (at once, from
    Content-Length, when the client sends one). ``token`` and ``max_body_bytes`` are set by the
    ingress replica's constructor: the app is pickled at import time, so they cannot be passed to it.
    """

    token: str | None = None
    max_body_bytes: int = 1_048_576
    open_paths = ("/healthz",)  # load balancers probe it without credentials
    body_paths = ("/v1/opinions", "/v1/generate")  # the routes that read a body; others answer 404/405 as usual

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        root = scope.get("root_path", "")
        path = scope["path"][len(root):] if scope["path"].startswith(root) else scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        reads_body = scope["method"] == "POST" and path in self.body_paths
        refusal = self._refusal(path, reads_body, headers)
        if refusal is None and reads_body:
            body, refusal = await self._read_body(receive)
            if refusal is None:
                receive = _replay(body, receive)
        if refusal is not None:
            return await refusal.response()(scope, receive, send)
        return await self.app(scope, receive, send)

    def _refusal(self, path: str, reads_body: bool, headers: dict[str, str]) -> ApiError | None:
        if self.token and path not in self.open_paths:
            scheme, _, credentials = headers.get("authorization", "").partition(" ")
            # Schemes are case-insensitive (RFC 9110 11.1); compare_digest: no timing hint about the token.
            if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self.token.encode()):
                return ApiError(401, "unauthorized", f"send 'Authorization: Bearer <token>' (the server's {TOKEN_ENV})",
                                {"WWW-Authenticate": "Bearer"})
        if reads_body:
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json":
                return ApiError(415, "unsupported media type",
                                f"send the body as application/json, not {media_type or 'nothing'}")
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body_bytes:
                return ApiError(413, "body too large", f"{length} bytes; at most {self.max_body_bytes}")
        return None

    async def _read_body(self, receive) -> tuple[bytes, ApiError | None]:
        """The whole body, or a 413 as soon as it passes the limit (chunked bodies carry no Content-Length)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"", ApiError(400, "incomplete body", "the client disconnected")
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return b"", ApiError(413, "body too large", f"over {self.max_body_bytes} bytes")
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that hands the already-read body to the app, then defers to the real one."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
