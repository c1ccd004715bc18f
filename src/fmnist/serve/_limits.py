"""What protects the server and its page: body size, parsing in memory only, what browsers may load."""

from __future__ import annotations

import contextlib
import json
import sys

from starlette.formparsers import MultiPartException, MultiPartParser


class TooLarge(Exception):
    """The request body went over the upload limit while it was being read."""


class BodyLimit:
    """ASGI middleware: bodies above ``limit`` bytes are refused with 413 before being read whole.

    A declared ``Content-Length`` over the limit is refused without passing a byte of the body
    to the app; a body sent without one (chunked) is counted as it arrives and refused as soon
    as it passes the limit. Either way at most ``limit`` bytes are ever held: the rest of a
    refused body is read and discarded (:func:`_drain`) so that the refusal reaches the client.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await _json(send, 400, {"error": "Content-Length is not a number"})
            if length > self.limit:
                if length <= DRAIN_LIMIT:
                    await _drain(receive)
                return await _json(send, 413, {"error": self.message()})
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            if not started:
                await _drain(receive)
                await _json(send, 413, {"error": self.message()})

    def message(self) -> str:
        return (f"upload too large: over the {self.limit:,}-byte limit; send smaller or fewer images "
                "(the server's --max-upload sets the limit)")


class SecurityHeaders:
    """ASGI middleware: every response says what the browser may load (only this server's own files).

    A response that sets its own ``Content-Security-Policy`` keeps it.
    """

    POLICY = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
              "frame-ancestors 'none'")
    HEADERS = [
        (b"content-security-policy", POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A route that set its own policy (the docs page) keeps it: browsers would
                # enforce both, and the stricter one would block what the route allows.
                own = {name.lower() for name, _ in headers}
                message = {**message, "headers": headers + [h for h in self.HEADERS if h[0] not in own]}
            await send(message)

        await self.app(scope, receive, with_headers)


# A refusal is only heard if the body was read: a connection closed with unread data is reset,
# and the client drops the answer it had already received ("connection reset", no reason). So
# the rest of a refused body is read and discarded first, within these bounds; past them (a
# declared size far over, a client that stalls) the connection is closed as it is. A body
# declared over DRAIN_LIMIT is not read at all (a client waiting for "100 Continue" then sends
# none of it).
DRAIN_LIMIT = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


async def _drain(receive) -> None:
    import asyncio

    async def read_rest():
        left = DRAIN_LIMIT
        while left > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read_rest(), DRAIN_SECONDS)


async def _json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


class MemoryMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, keeping every uploaded file in memory, never on disk.

    Starlette spools files over 1 MB to a temporary file; the body is already capped by
    :class:`BodyLimit`, so memory stays bounded and nothing a client sends touches the disk.
    """

    spool_max_size = sys.maxsize

    async def parse(self):
        self._ended = False
        form = await super().parse()
        if not self._ended:
            # python-multipart accepts a body that stops inside a part, and the part is dropped:
            # the client would hear "no file" for an upload that was cut off.
            await form.close()
            raise MultiPartException("the body ends before its closing boundary (the upload was cut off); "
                                     "send it again")
        return form

    def on_headers_finished(self) -> None:
        try:
            super().on_headers_finished()
        except MultiPartException:
            # Starlette's own words ("Too many files. Maximum number of files is 32.") would be
            # shown as a malformed upload; a request over a limit is well formed, just too big.
            if self._current_files > self.max_files:
                raise TooManyParts(f"too many files: at most {self.max_files} per request; send them in several "
                                   "requests") from None
            if self._current_fields > self.max_fields:
                raise TooManyParts(f"too many text fields: at most {self.max_fields} per request; send images as "
                                   "files in the field 'file'") from None
            raise

    def on_end(self) -> None:
        self._ended = True
        super().on_end()


class TooManyParts(MultiPartException):
    """A well-formed request with more files or text fields than allowed; the message says which."""
