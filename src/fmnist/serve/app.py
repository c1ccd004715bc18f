"""The web service: a prediction page and a JSON API around one loaded model.

:func:`create_app` builds the ASGI application (FastAPI) for a model and :class:`Settings`;
tests use it in-process, ``fmnist serve`` runs uvicorn on it. Routes:

- ``GET /``: the page (``static/``: choose, drop, photograph or draw garments);
- ``POST /api/predict``: multipart, field ``file`` once or more; the records of
  ``fmnist predict --json``, each prediction and error with ``upload``, its file's position in
  the request (``?image=true`` adds the 28x28 image the model saw, as a PNG data URL; ``?top_k=N``);
- ``GET /api/health`` (``HEAD`` too, as for ``/``), ``GET /api/model``; ``/openapi.json``, and
  ``/docs``: Swagger UI served from this server's own files (those of the ``fastapi-offline``
  package; without it ``/docs`` is off, as FastAPI's own would load its scripts from a CDN).

Hostile input: bodies over ``max_upload`` get 413 before they are read whole; files are
parsed in memory and never written to disk; a file's name is only echoed back, never used
as a path; bad files get the same one-line reasons as ``fmnist predict``; at most
``concurrency`` requests are read and prepared at once, ``queue_size`` more may wait up
to ``queue_timeout`` seconds, and any beyond get 503: memory stays bounded under any load.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import os
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from fmnist.errors import ModelError, UsageError
from fmnist.serve.limits import MAX_UPLOAD_LIMIT
from fmnist.serve._batch import Batcher
from fmnist.serve._limits import BodyLimit, MemoryMultiPartParser, SecurityHeaders, TooManyParts

STATIC = Path(__file__).parent / "static"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the service allows; every limit is here, none is a literal in the code.

    ``max_upload``: bytes per request (all files together); ``max_files``: files per
    request; ``concurrency``: requests read and prepared at once; ``queue_size``: requests
    that may wait for that; ``queue_timeout``: seconds one may wait before 503;
    ``max_batch``: images per forward pass (1: no batching); ``top_k``: classes per image
    unless the request asks; ``cors_origins``: origins allowed to call the API from
    other sites' pages (empty: CORS off); ``upload_idle``: seconds an upload may send nothing
    and ``upload_time`` seconds it may take in all before 408, so a stalled or trickling client
    gives its place back (a place is held while the upload is read: that bounds the memory).
    """

    max_upload: int = 10_000_000
    max_files: int = 32
    concurrency: int = 4
    queue_size: int = 512
    queue_timeout: float = 60.0
    max_batch: int = 64
    top_k: int = 3
    cors_origins: tuple[str, ...] = ()
    upload_idle: float = 10.0
    upload_time: float = 120.0

    def __post_init__(self) -> None:
        for name, least in (("max_upload", 1), ("max_files", 1), ("concurrency", 1), ("max_batch", 1),
                            ("top_k", 1), ("queue_size", 0), ("queue_timeout", 0), ("upload_idle", 0.001),
                            ("upload_time", 0.001)):
            if getattr(self, name) < least:
                raise UsageError(f"{name} (--{name.replace('_', '-')}) must be at least {least}, "
                                 f"got {getattr(self, name)}")
        if self.max_upload > MAX_UPLOAD_LIMIT:
            raise UsageError(f"max_upload (--max-upload) is at most {MAX_UPLOAD_LIMIT:,} bytes (1GiB): uploads are "
                             f"held in memory; got {self.max_upload:,}")
        for origin in self.cors_origins:
            _check_origin(origin)


def _check_origin(origin: str) -> None:
    """UsageError unless ``origin`` is one a browser sends (``scheme://host[:port]``), or ``*`` (any).

    CORS compares the Origin header with each allowed origin as text, and a browser sends it
    without a path, in lower case, and without the scheme's default port: anything else would
    never match, and the API would stay closed to the page without a word.
    """
    from urllib.parse import urlsplit

    if origin == "*":
        return
    guess = origin if "://" in origin else "https://" + origin
    try:
        parts = urlsplit(guess)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    canonical = None
    if host and parts.scheme:
        host = f"[{host}]" if ":" in host else host
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        canonical = f"{parts.scheme.lower()}://{host}" + (f":{port}" if port and port != default else "")
    if canonical == origin:
        return
    hint = f"did you mean {canonical}?" if canonical else "e.g. https://example.org or http://localhost:8000"
    raise UsageError(f"--cors-origin {origin!r}: not an origin (scheme://host[:port]), so no browser's request "
                     f"would ever match it; {hint}")


@dataclasses.dataclass
class ServedModel:
    """A loaded model and what the service says about it: name, class names, spec, metrics, run."""

    model: Any
    name: str
    class_names: list[str]
    info: dict[str, Any]
    labels: list | None = None  # each column's label where the model does not know them (a NetClassifier's)


def load_served(path: str | Path) -> ServedModel:
    """Load a run folder or saved model (the safe loader) with its description files."""
    from fmnist.inference.predict import _n_classes, class_names_for, labels_for
    from fmnist.models.io import load_model, model_info

    path = Path(path)
    model = load_model(path)
    folder = path.parent if path.is_file() else path
    meta = model_info(folder)
    info: dict[str, Any] = {"model": meta.get("name"), "family": meta.get("family"),
                            "spec": meta.get("spec", meta.get("params"))}
    for key, file in (("metrics", "metrics.json"), ("run", "run.json")):
        try:
            info[key] = json.loads((folder / file).read_text())
        except (OSError, ValueError, RecursionError):
            info[key] = None
    names = class_names_for(folder, _n_classes(model))
    return ServedModel(model, str(meta.get("name") or folder.name), names, info, labels_for(folder))


# --- the API's shapes (also its OpenAPI schema) -----------------------------------------------

class TopK(BaseModel):
    label: int | str
    class_name: str
    probability: float


_UPLOAD = Field(description="the upload's position among the request's files, from 0: names may repeat "
                            "(a phone names every camera photo image.jpg)")


class PredictionOut(BaseModel):
    file: str = Field(description="the upload's file name, as sent (never used as a path)")
    upload: int = _UPLOAD
    label: int | str
    class_name: str
    probability: float
    top_k: list[TopK]
    prepared: str = Field(description="how the image was made the model's input: as-is (a 28x28 light-on-dark "
                                      "image), photo (dark on light, negated), light-on-dark or batch")
    warning: str | None = Field(None, description="present when the garment may have been found wrongly")
    image: str | None = Field(None, description="with ?image=true: the 28x28 image the model saw, PNG data URL")


class FileError(BaseModel):
    file: str
    upload: int = _UPLOAD
    error: str


class PredictOut(BaseModel):
    predictions: list[PredictionOut]
    errors: list[FileError]


class ErrorOut(BaseModel):
    error: str
    errors: list[FileError] = []


class HealthOut(BaseModel):
    status: str
    model: str
    classes: list[str]


_ERRORS = {code: {"model": ErrorOut, "description": what} for code, what in (
    (400, "not a multipart upload with files in the field 'file', or more files than the server takes at once"),
    (413, "upload over the size limit"),
    (408, "the upload stalled or took too long: send it again, or fewer images at once"),
    (422, "no file was a usable image"), (500, "the model's outputs are not numbers (its weights overflow)"),
    (503, "too busy: try again shortly"))}


def _clean_name(name: str | None) -> str:
    """A file name fit to show: the last path component, printable, at most 200 characters."""
    name = PurePosixPath((name or "").replace("\\", "/")).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    return name[:200] or "upload"


def _png_data_url(image) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _in_memory(model) -> ServedModel:
    """A model object served as it is: named by its type, its classes Fashion-MNIST's (or numbers)."""
    from torch import nn

    from fmnist.inference.predict import _default_names, _n_classes

    if not (isinstance(model, nn.Module) or hasattr(model, "predict_proba")):
        raise UsageError(f"create_app: expected a run or model folder, a loaded model or a ServedModel, "
                         f"got {type(model).__name__}")
    if isinstance(model, nn.Module):
        model.eval()
    n = _n_classes(model)
    return ServedModel(model, type(model).__name__, _default_names(n)[:n], {})


def create_app(model, settings: Settings | None = None) -> FastAPI:
    """The service for ``model``: a run/model folder to load, a model in memory (what
    :func:`fmnist.load_model` returns, or a network being trained in a notebook), or a
    :class:`ServedModel`.

    >>> app = create_app("runs/mlp-200", Settings(max_upload=5_000_000))
    >>> # uvicorn.run(app), or fastapi.testclient.TestClient(app) in tests
    """
    settings = settings or Settings()
    if isinstance(model, ServedModel):
        served = model
    elif isinstance(model, (str, os.PathLike)):
        served = load_served(model)
    else:
        served = _in_memory(model)
    batcher = Batcher(served.model, class_names=served.class_names, max_batch=settings.max_batch,
                      labels=served.labels)
    slots = _Slots(settings.concurrency, settings.queue_size)

    app = FastAPI(title="fmnist", summary=f"Fashion-MNIST classifier: {served.name}",
                  docs_url=None, redoc_url=None)
    app.state.settings, app.state.served, app.state.batcher = settings, served, batcher
    # Outermost last: headers on every answer, CORS answers preflights, then the size limit.
    app.add_middleware(BodyLimit, limit=settings.max_upload)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"])
    app.add_middleware(SecurityHeaders)

    # HEAD as GET without its body: uptime checks ask the page and /api/health that way.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    _add_docs(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # The API's one error shape, {"error": "..."}, for a bad query value too (FastAPI's own
        # is {"detail": [...]}): which parameter, what it got, what it needs.
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            parts.append(f"{where}={err.get('input')!r}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # 404, 405...: the same {"error": "..."} shape as every other answer of the API.
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", response_model=HealthOut)
    async def health():
        return {"status": "ok", "model": served.name, "classes": served.class_names}

    @app.head("/api/health", include_in_schema=False)
    async def health_head():
        body = JSONResponse(await health())
        return Response(headers={"content-length": body.headers["content-length"]}, media_type="application/json")

    @app.get("/api/model")
    async def model_info():
        """The model's spec, its metrics and its run's record (run.json), as saved."""
        return {"name": served.name, "classes": served.class_names, **served.info}

    @app.post("/api/predict", response_model=PredictOut, response_model_exclude_none=True, responses=_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "properties": {"file": {"type": "array", "items": {
                      "type": "string", "format": "binary"}}}}}}}})
    async def predict(request: Request, top_k: int | None = Query(None, ge=1, description="classes per image"),
                      image: bool = Query(False, description="add the 28x28 image the model saw")):
        """Classify one or more images sent as multipart field ``file``."""
        async with slots.enter(settings.queue_timeout) as admitted:
            if not admitted:
                return JSONResponse({"error": "server busy: too many requests waiting; try again shortly"},
                                    status_code=503, headers={"Retry-After": "1"})
            uploads = await _read_uploads(request, settings)
            if isinstance(uploads, Response):
                return uploads
            inputs, positions, errors = await asyncio.to_thread(_prepare, uploads)
            if not inputs:
                first = errors[0]
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                return JSONResponse({"error": f"no usable image: {first['file']}: {first['error']}{more}",
                                     "errors": errors}, status_code=422)
            k = min(top_k or settings.top_k, len(served.class_names))
            try:
                predictions = await batcher.predict(inputs, k)
            except ModelError as exc:  # outputs that are not numbers: the model, not the upload, is at fault
                return JSONResponse({"error": str(exc), "errors": errors}, status_code=500)
        records = []
        for p, position in zip(predictions, positions):
            record = p.to_dict()
            record = {"file": record.pop("file"), "upload": position, **record}
            if image:
                record["image"] = _png_data_url(p.input.image)
            records.append(record)
        return {"predictions": records, "errors": errors}

    return app


def _prepare(uploads: list[tuple[str, bytes]]) -> tuple[list, list[int], list[dict[str, Any]]]:
    """The usable uploads' Inputs, the position of each among the uploads, and an error record per bad one."""
    from fmnist.inference.predict import load_uploads

    inputs, positions, errors = [], [], []
    for position, upload in enumerate(uploads):
        usable, failures = load_uploads([upload])
        inputs += usable
        positions += [position] * len(usable)
        errors += [{"file": f.file, "upload": position, "error": f.reason} for f in failures]
    return inputs, positions, errors


def _add_docs(app: FastAPI) -> None:
    """``GET /docs``: Swagger UI from files this server serves itself, under ``/docs-static``.

    The files are the ``fastapi-offline`` package's (Swagger UI 5, which reads FastAPI's
    OpenAPI 3.1); without that package there are no docs. The page's one inline script (it
    starts Swagger UI) is allowed by its hash, nothing else outside this server.
    """
    import hashlib
    import importlib.util
    import re

    from fastapi.openapi.docs import get_swagger_ui_html

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return
    files = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (files / "swagger-ui-bundle.js").is_file():
        return
    app.mount("/docs-static", StaticFiles(directory=files), name="docs-static")
    html = get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                               swagger_js_url="/docs-static/swagger-ui-bundle.js",
                               swagger_css_url="/docs-static/swagger-ui.css",
                               swagger_favicon_url="/docs-static/favicon.png",
                               swagger_ui_parameters={"validatorUrl": None}).body
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
                      for script in re.findall(rb"<script>(.*?)</script>", html, re.S))
    policy = SecurityHeaders.POLICY.replace("default-src 'self';", f"default-src 'self'; script-src 'self' {hashes};")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return Response(html, media_type="text/html", headers={"content-security-policy": policy})


async def _read_uploads(request: Request, settings: Settings):
    """The request's ``(name, bytes)`` uploads, or the 400 response saying what is wrong."""
    from starlette.formparsers import MultiPartException

    def bad(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return bad("send the images as multipart/form-data, one or more in the field 'file'")
    parser = MemoryMultiPartParser(request.headers, _timed(request.stream(), settings), max_files=settings.max_files,
                                   max_fields=16)
    try:
        form = await parser.parse()
    except TooManyParts as exc:
        return bad(str(exc))
    except MultiPartException as exc:
        return bad(f"malformed upload: {exc}")
    except _SlowUpload as exc:
        return JSONResponse({"error": str(exc)}, status_code=408, headers={"Connection": "close"})
    except ClientDisconnect:  # the client went away mid-upload: no one reads the answer
        return Response(status_code=400)
    try:
        files = [v for k, v in form.multi_items() if k == "file" and not isinstance(v, str)]
        if not files:
            if "file" in form:  # a text field: no filename in its part (curl -F file=photo.jpg, without the @)
                return bad("no file: the field 'file' came as text, not as a file; send each image as a file "
                           "(a multipart part with a filename, e.g. curl -F file=@photo.jpg)")
            return bad("no file: send one or more images in the multipart field 'file'")
        return [(_clean_name(f.filename), await f.read()) for f in files]
    finally:
        await form.close()


class _SlowUpload(Exception):
    """An upload that sent nothing for ``upload_idle`` seconds, or took over ``upload_time``."""


async def _timed(stream, settings: Settings):
    """``stream``'s chunks, each within ``upload_idle`` seconds and all within ``upload_time``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.upload_time
    chunks = stream.__aiter__()
    while True:
        left = deadline - loop.time()
        wait = min(settings.upload_idle, left)
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), max(wait, 0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            if wait < settings.upload_idle:
                raise _SlowUpload(f"upload too slow: not finished in {settings.upload_time:g} s; send smaller "
                                  "images, or fewer at once") from None
            raise _SlowUpload(f"upload stalled: nothing arrived for {settings.upload_idle:g} s") from None
        yield chunk


class _Slots:
    """At most ``active`` requests inside at once; ``waiting`` more may queue; beyond that, none.

    ``async with slots.enter(timeout) as admitted``: False when the queue is full or the wait
    ran out. Its semaphore belongs to one event loop (a test client may start several).
    """

    def __init__(self, active: int, waiting: int) -> None:
        self.active, self.waiting = active, waiting
        self._loop = self._semaphore = None
        self._queued = 0

    @contextlib.asynccontextmanager
    async def enter(self, timeout: float):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._semaphore, self._queued = loop, asyncio.Semaphore(self.active), 0
        semaphore = self._semaphore
        if semaphore.locked() and self._queued >= self.waiting:
            yield False
            return
        self._queued += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout)
        except TimeoutError:
            admitted = False
        else:
            admitted = True
        finally:
            self._queued -= 1
        if not admitted:
            yield False
            return
        try:
            yield True
        finally:
            semaphore.release()
