"""The web service in-process (httpx on the ASGI app): API records, hostile uploads, limits, batching."""

import asyncio
import base64
import functools
import io
import json
import tempfile

import httpx
import numpy as np
import pytest
from PIL import Image

import fmnist
from fmnist.errors import UsageError
from fmnist.inference.predict import predict_files
from fmnist.serve.app import STATIC, Settings, create_app, load_served
from tests.inference.test_predict import _png_header_only
from tests.inference.test_preprocess import as_photo, framed_garment, garment


def jpeg(label: int, seed: int = 0, **kw) -> bytes:
    buf = io.BytesIO()
    as_photo(framed_garment(label, seed=10 + label + seed), fmt="PNG", **kw).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tiny_run):
    return load_served(tiny_run)


def run(app, *calls):
    """Send ``calls`` (method, url, kwargs) to ``app`` at once, in one event loop; the responses, in order."""

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            return await asyncio.gather(*(client.request(m, u, **kw) for m, u, kw in calls))

    return asyncio.run(go())


def post(app, files, params=None):
    return run(app, ("POST", "/api/predict", {"files": [("file", f) for f in files], "params": params or {}}))[0]


def test_health_and_model(served):
    app = create_app(served)
    health, model = run(app, ("GET", "/api/health", {}), ("GET", "/api/model", {}))
    assert health.json() == {"status": "ok", "model": "mlp-100", "classes": served.class_names}
    info = model.json()
    assert info["name"] == "mlp-100" and info["spec"]["layers"][-1]["units"] == 10
    assert info["metrics"]["val"]["accuracy"] > 0.9 and info["run"]["model"] == "mlp-100"


def test_a_model_in_memory_is_served_as_its_folder_is(served, tiny_run):
    in_memory = create_app(fmnist.load_model(tiny_run))
    photo = [("p.jpg", jpeg(7), "image/jpeg")]
    got, expected = post(in_memory, photo).json(), post(create_app(served), photo).json()
    # The same answers; only the names differ: the folder's are its data's, a bare model's Fashion-MNIST's.
    assert [[(t["label"], t["probability"]) for t in p["top_k"]] for p in got["predictions"]] == \
        [[(t["label"], t["probability"]) for t in p["top_k"]] for p in expected["predictions"]]
    assert run(in_memory, ("GET", "/api/health", {}))[0].json()["classes"] == list(fmnist.CLASS_NAMES)
    with pytest.raises(UsageError, match="create_app: expected a run or model folder, a loaded model"):
        create_app(42)


def test_records_are_those_of_fmnist_predict(served, tiny_run, tmp_path):
    """The same files through the API and through predict_files give the same records, in order."""
    photos = {f"class{label}.jpg": jpeg(label) for label in (3, 7, 5)}
    for name, data in photos.items():
        (tmp_path / name).write_bytes(data)
    expected = [p.to_dict() for p in predict_files(tiny_run, [tmp_path / n for n in photos], top_k=3).predictions]
    for position, (e, name) in enumerate(zip(expected, photos)):
        e["file"] = name  # the CLI names the path, the API the upload, and its position in the request
        e["upload"] = position
    response = post(create_app(served), [(name, data, "image/jpeg") for name, data in photos.items()])
    assert response.status_code == 200
    body = response.json()
    assert body == {"predictions": expected, "errors": []}
    assert [p["label"] for p in body["predictions"]] == [3, 7, 5]


def test_top_k_and_the_image_the_model_saw(served):
    from fmnist.inference.predict import load_uploads

    data = jpeg(7)
    body = post(create_app(served, Settings(top_k=2)), [("p.jpg", data, "image/jpeg")], {"image": "true"}).json()
    p = body["predictions"][0]
    assert len(p["top_k"]) == 2
    assert p["image"].startswith("data:image/png;base64,")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(p["image"].split(",", 1)[1]))))
    np.testing.assert_array_equal(seen, load_uploads([("p.jpg", data)])[0][0].image)
    again = post(create_app(served), [("p.jpg", data, "image/jpeg")], {"top_k": "5"}).json()["predictions"][0]
    assert len(again["top_k"]) == 5 and "image" not in again


@pytest.mark.parametrize("query, words", [
    ({"top_k": "0"}, "top_k='0'"),
    ({"top_k": "abc"}, "top_k='abc'"),
    ({"image": "maybe"}, "image='maybe'"),
])
def test_a_bad_query_value_is_a_422_in_the_apis_own_shape(served, query, words):
    r = post(create_app(served), [("p.jpg", jpeg(7), "image/jpeg")], query)
    assert r.status_code == 422 and set(r.json()) == {"error"} and words in r.json()["error"], r.text


@functools.cache
def _hostile() -> dict[str, tuple[str, bytes, str]]:
    """case -> (file name, bytes, words the one-line reason must contain)."""
    good_png = io.BytesIO()
    as_photo(garment(5), fmt="PNG").save(good_png, "PNG")
    png, jpg = good_png.getvalue(), jpeg(3)
    # A small file that would inflate to 72 MB of pixels: under Pillow's own bomb check, over ours.
    bomb = io.BytesIO()
    Image.new("L", (9_000, 8_000)).save(bomb, "PNG")
    return {
        "empty": ("empty.png", b"", "empty"),
        "not an image": ("notes.jpg", b"these are not pixels\n" * 50, "not an image"),
        "truncated png": ("cut.png", png[: len(png) // 2], "truncated"),
        "truncated jpeg": ("cut.jpg", jpg[: len(jpg) // 2], "truncated"),
        "header claims 10^10 pixels": ("huge.png", _png_header_only(100_000, 100_000), "large"),
        "npy array": ("batch.npy", b"\x93NUMPY\x01\x00" + b" " * 100, "fmnist predict"),
        "html with a script": ("<script>alert(1)</script>.png", b"<html><script>alert(1)</script></html>",
                               "not an image"),
        "decompression bomb": ("bomb.png", bomb.getvalue(), "refused before decoding"),
    }


@pytest.mark.parametrize("case", list(_hostile()))
def test_each_hostile_upload_is_a_4xx_json_and_the_server_goes_on(served, case):
    name, data, words = _hostile()[case]
    app = create_app(served)
    bad, health = run(app, ("POST", "/api/predict", {"files": [("file", (name, data, "image/png"))]}),
                      ("GET", "/api/health", {}))
    assert bad.status_code == 422, bad.text
    body = bad.json()
    assert words in body["error"] and body["errors"][0]["error"] in body["error"]
    assert ".npy" not in body["errors"][0]["error"] or case == "npy array"  # not offered where it is refused
    assert health.status_code == 200
    assert post(app, [("ok.jpg", jpeg(3), "image/jpeg")]).status_code == 200


def test_every_image_too_large_gets_the_same_refusal_naming_our_limit(served):
    """Over our 64 megapixels, over Pillow's warning (~89) and its error (~179): one message, one limit."""
    import re

    sizes = [(9_000, 8_000), (10_000, 10_000), (15_000, 15_000), (100_000, 100_000)]
    files = [(f"{w}x{h}.png", _png_header_only(w, h), "image/png") for w, h in sizes]
    errors = post(create_app(served), files).json()["errors"]
    assert len(errors) == len(sizes)
    for e in errors:
        assert re.fullmatch(r"absurdly large image \([0-9, x]+ pixels\), over the 64 megapixel limit; "
                            r"refused before decoding: resize it first", e["error"]), e


def test_mixed_request_is_200_with_both_lists(served):
    hostile = _hostile()
    files = [("a.jpg", jpeg(3), "image/jpeg"), hostile["empty"][:2] + ("image/png",),
             ("b.jpg", jpeg(7), "image/jpeg"), hostile["truncated png"][:2] + ("image/png",)]
    body = post(create_app(served), files).json()
    assert [p["file"] for p in body["predictions"]] == ["a.jpg", "b.jpg"]
    assert [e["file"] for e in body["errors"]] == ["empty.png", "cut.png"]
    assert "empty" in body["errors"][0]["error"] and "truncated" in body["errors"][1]["error"]


def test_uploads_of_one_name_are_told_apart_by_their_position(served):
    """A phone names every camera photo image.jpg: each record says which upload of the request it is."""
    same = [("image.jpg", jpeg(3), "image/jpeg"), ("image.jpg", b"", "image/jpeg"),
            ("image.jpg", jpeg(7), "image/jpeg"), ("image.jpg", b"not pixels" * 9, "image/jpeg")]
    body = post(create_app(served), same).json()
    assert [(p["upload"], p["label"]) for p in body["predictions"]] == [(0, 3), (2, 7)]
    assert [(e["upload"], "empty" in e["error"]) for e in body["errors"]] == [(1, True), (3, False)]
    refused = post(create_app(served), same[1::2]).json()  # all unusable: the 422's list says which too
    assert [e["upload"] for e in refused["errors"]] == [0, 1]
    schemas = run(create_app(served), ("GET", "/openapi.json", {}))[0].json()["components"]["schemas"]
    for shape in ("PredictionOut", "FileError"):
        upload = schemas[shape]["properties"]["upload"]
        assert "upload" in schemas[shape]["required"] and "position" in upload["description"]


@pytest.mark.parametrize("mode", ["RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_odd_modes_are_predicted_like_predict_does(served, tiny_run, tmp_path, mode):
    photo = as_photo(garment(3), fmt="PNG")
    image = (Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257) if mode == "I;16"
             else photo.convert(mode))
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    image.save(buf, fmt)
    (tmp_path / "odd").write_bytes(buf.getvalue())
    expected = predict_files(tiny_run, [tmp_path / "odd"]).predictions[0].to_dict()
    body = post(create_app(served), [("odd", buf.getvalue(), "application/octet-stream")]).json()
    assert body["predictions"][0] == {**expected, "file": "odd", "upload": 0}


def multipart(files: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[bytes, dict]:
    """A multipart body with the file names exactly as given (httpx would percent-encode some)."""
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                    "Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
    return body + f"--{boundary}--\r\n".encode(), {"content-type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize("name, shown", [
    ("../../../etc/passwd", "passwd"), ("C:\\Windows\\win.ini", "win.ini"), ("/abs/path/x.jpg", "x.jpg"),
    ("bell\x07\x7f\u202eevil.jpg", "bellevil.jpg"), ("", "upload"), ("x" * 300 + ".jpg", "x" * 200)])
def test_file_names_are_only_labels(served, tmp_path, monkeypatch, name, shown):
    """A crafted name is shown cleaned and is never opened: the upload is read from memory."""
    monkeypatch.chdir(tmp_path)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    body, headers = multipart([(name, jpeg(3))])
    response = run(create_app(served), ("POST", "/api/predict", {"content": body, "headers": headers}))[0]
    assert response.json()["predictions"][0]["file"] == shown
    assert not [f for f in opened if "passwd" in f or "win.ini" in f or "x.jpg" in f or "evil" in f]
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_written_to_disk(served, monkeypatch):
    """An upload larger than Starlette's 1 MB spool stays in memory: no temporary file is made."""
    def no_disk(self):
        raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
    noisy = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    noisy[300:900, 300:900] //= 4  # a dark garment-ish square on a light noisy frame
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "PNG")
    assert len(buf.getvalue()) > 3_000_000
    response = post(create_app(served), [("big.png", buf.getvalue(), "image/png")])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("declared", [100_000, 10 ** 12])
def test_an_oversized_upload_is_refused_once_its_body_is_read_unless_it_is_huge(served, declared):
    """Content-Length above the limit: the rest of the body is read and thrown away before the
    413 (a connection closed with unread data is reset, and the client loses the answer); a
    body declared over DRAIN_LIMIT is not read at all."""
    from fmnist.serve._limits import DRAIN_LIMIT

    app = create_app(served, Settings(max_upload=1000))
    reads, sent = [], []

    async def go():
        async def receive():
            reads.append(len(sent))  # how much had been answered when each chunk was read
            return {"type": "http.request", "body": b"x" * 10_000, "more_body": len(reads) < 10}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/predict", "raw_path": b"/api/predict", "query_string": b"",
                 "root_path": "", "server": ("test", 80), "client": ("test", 1),
                 "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                             (b"content-length", str(declared).encode())]}
        await app(scope, receive, send)

    asyncio.run(go())
    assert sent[0]["status"] == 413 and "1,000-byte limit" in json.loads(sent[1]["body"])["error"]
    assert reads == ([0] * 10 if declared <= DRAIN_LIMIT else [])


def test_oversized_chunked_upload_is_cut_off(served):
    """No Content-Length (chunked): counted as it arrives, refused once past the limit (the rest
    read and thrown away, never held)."""
    app = create_app(served, Settings(max_upload=50_000))
    chunks = []

    head, headers = multipart([("big.jpg", b"")])

    async def body():
        yield head[:head.index(b"\r\n\r\n") + 4]
        for _ in range(100):  # then 1 MB of file offered in 10 kB chunks
            chunks.append(1)
            yield b"y" * 10_000

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/api/predict", content=body(), headers=headers)

    response = asyncio.run(go())
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert len(chunks) == 100  # read to its end, and thrown away, before the answer


@pytest.mark.parametrize("kwargs, words", [
    ({"content": b"just bytes", "headers": {"content-type": "application/octet-stream"}}, "multipart/form-data"),
    ({"files": [("picture", ("a.jpg", b"x", "image/jpeg"))]}, "field 'file'"),
    ({"content": b"--zz\r\nnonsense", "headers": {"content-type": "multipart/form-data; boundary=x"}}, ""),
])
def test_malformed_requests_are_400(served, kwargs, words):
    response = run(create_app(served), ("POST", "/api/predict", kwargs))[0]
    assert response.status_code in (400, 422) and words in response.json()["error"]


def test_a_body_cut_off_inside_its_file_is_400_saying_so(served):
    whole, headers = multipart([("a.jpg", jpeg(3))])
    cut = whole[:whole.rindex(b"--b0undary--") - 50]  # inside the file, no closing boundary
    response = run(create_app(served), ("POST", "/api/predict", {"content": cut, "headers": headers}))[0]
    assert response.status_code == 400 and "ends before its closing boundary" in response.json()["error"]
    assert post(create_app(served), [("a.jpg", jpeg(3), "image/jpeg")]).status_code == 200  # a whole one is read


def test_too_many_files_is_400_saying_the_limit_and_what_to_do(served):
    files = [("f.jpg", b"x", "image/jpeg")] * 4
    response = post(create_app(served, Settings(max_files=3)), files)
    assert response.status_code == 400
    assert response.json()["error"] == "too many files: at most 3 per request; send them in several requests"
    fields = run(create_app(served), ("POST", "/api/predict", {"data": {f"note{i}": "x" for i in range(17)},
                                                               "files": [("file", ("a.jpg", b"x", "image/jpeg"))]}))[0]
    assert fields.status_code == 400 and fields.json()["error"].startswith("too many text fields: at most 16"), \
        fields.text


def test_the_field_file_sent_as_text_is_400_saying_so(served):
    """curl -F file=photo.jpg (no @) sends the name as text: the answer says it was not a file."""
    response = run(create_app(served), ("POST", "/api/predict", {"data": {"file": "photo.jpg"},
                                                                 "files": [("other", ("x.bin", b"x"))]}))[0]
    assert response.status_code == 400
    assert "the field 'file' came as text, not as a file" in response.json()["error"], response.text


def test_busy_server_answers_503_and_recovers(served):
    """One request inside (its body still arriving), none may queue: the next gets 503 at once."""
    app = create_app(served, Settings(concurrency=1, queue_size=0))
    data = jpeg(3)
    whole, headers = multipart([("a.jpg", data)])
    head, tail = whole[:whole.index(data)], whole[whole.index(data) + len(data):]

    async def go():
        release = asyncio.Event()

        async def slow_body():
            yield head + data[:100]
            await release.wait()
            yield data[100:] + tail

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            slow = asyncio.create_task(client.post("/api/predict", content=slow_body(), headers=headers))
            await asyncio.sleep(0.2)
            busy = await client.post("/api/predict", files=[("file", ("b.jpg", data, "image/jpeg"))])
            health = await client.get("/api/health")
            release.set()
            first = await slow
            after = await client.post("/api/predict", files=[("file", ("c.jpg", data, "image/jpeg"))])
            return busy, health, first, after

    busy, health, first, after = asyncio.run(go())
    assert busy.status_code == 503 and "busy" in busy.json()["error"] and busy.headers["retry-after"] == "1"
    assert health.status_code == 200
    assert first.status_code == 200 and after.status_code == 200


@pytest.mark.parametrize("settings, pause, gaps, words", [
    ({"upload_idle": 0.2}, 30.0, 1, "upload stalled: nothing arrived for 0.2 s"),  # sends nothing more
    ({"upload_idle": 0.2, "upload_time": 0.5}, 0.1, 20, "upload too slow: not finished in 0.5 s"),  # trickles
])
def test_a_stalled_or_trickling_upload_gives_its_place_back(served, settings, pause, gaps, words):
    """The only place is held by an upload that stalls: it is answered 408, and the next request is served."""
    app = create_app(served, Settings(concurrency=1, **settings))
    data = jpeg(3)
    whole, headers = multipart([("a.jpg", data)])

    async def go():
        async def slow_body():
            yield whole[:200]
            for i in range(gaps):
                await asyncio.sleep(pause)
                yield whole[200 + i:201 + i]
            yield whole[200 + gaps:]

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            slow = asyncio.create_task(client.post("/api/predict", content=slow_body(), headers=headers))
            await asyncio.sleep(0.05)
            waiting = await client.post("/api/predict", files=[("file", ("b.jpg", data, "image/jpeg"))])
            return await asyncio.wait_for(slow, 5), waiting

    slow, waiting = asyncio.run(go())
    assert slow.status_code == 408 and slow.json()["error"].startswith(words)
    assert waiting.status_code == 200


def test_a_client_gone_mid_upload_is_no_error(served, caplog):
    app = create_app(served)
    whole, headers = multipart([("a.jpg", jpeg(3))])
    sent = []

    async def go():
        async def receive():
            if not sent:
                sent.append(1)
                return {"type": "http.request", "body": whole[:300], "more_body": True}
            return {"type": "http.disconnect"}

        answer = []

        async def send(message):
            answer.append(message)

        scope = {"type": "http", "method": "POST", "path": "/api/predict", "raw_path": b"/api/predict",
                 "query_string": b"", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                 "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("c", 1), "root_path": ""}
        await app(scope, receive, send)
        return answer

    answer = asyncio.run(go())
    assert answer[0]["status"] == 400  # returned, not raised: nothing for the server to log


def test_unknown_paths_and_methods_answer_in_the_apis_own_shape(served):
    missing, wrong = run(create_app(served), ("GET", "/api/nothing", {}), ("GET", "/api/predict", {}))
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found: GET /api/nothing"}
    assert wrong.status_code == 405 and wrong.json()["error"] == "Method Not Allowed: GET /api/predict"


def test_head_is_answered_as_get_without_a_body(served):
    """Uptime checks use HEAD: the page and /api/health answer it with GET's status and headers."""
    app = create_app(served)
    head_page, get_page, head_health, get_health = run(app, ("HEAD", "/", {}), ("GET", "/", {}),
                                                       ("HEAD", "/api/health", {}), ("GET", "/api/health", {}))
    for head, get in ((head_page, get_page), (head_health, get_health)):
        assert head.status_code == 200 and head.content == b"", head
        assert head.headers["content-type"] == get.headers["content-type"]
        assert int(head.headers["content-length"]) == len(get.content)


def test_concurrent_requests_share_forward_passes(served):
    """Requests that arrive together are predicted in fewer forward passes than requests, all answered."""
    data = jpeg(7)
    calls = [("POST", "/api/predict", {"files": [("file", (f"{i}.jpg", data, "image/jpeg"))]}) for i in range(40)]
    app = create_app(served, Settings(concurrency=8, queue_timeout=600))  # a loaded CI machine is slow
    responses = run(app, *calls)
    assert [r.status_code for r in responses] == [200] * 40
    assert {r.json()["predictions"][0]["label"] for r in responses} == {7}
    assert [r.json()["predictions"][0]["file"] for r in responses] == [f"{i}.jpg" for i in range(40)]
    assert app.state.batcher.batches < 40
    unbatched = create_app(served, Settings(concurrency=8, queue_timeout=600, max_batch=1))
    assert [r.status_code for r in run(unbatched, *calls)] == [200] * 40
    assert unbatched.state.batcher.batches == 40


def test_page_loads_nothing_from_elsewhere(served):
    page, js, css = run(create_app(served), ("GET", "/", {}), ("GET", "/static/app.js", {}),
                        ("GET", "/static/app.css", {}))
    assert page.status_code == js.status_code == css.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for f in STATIC.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f.name
    assert 'capture="environment"' in page.text and "multiple" in page.text and "<canvas" in page.text


def test_docs_are_served_from_local_files_and_cors_is_off_by_default(served):
    import base64
    import hashlib
    import re

    app = create_app(served)
    docs, openapi, cross = run(app, ("GET", "/docs", {}), ("GET", "/openapi.json", {}),
                               ("OPTIONS", "/api/predict", {"headers": {
                                   "origin": "https://elsewhere.example", "access-control-request-method": "POST"}}))
    assert docs.status_code == 200
    # Everything the docs page loads is this server's own; its one inline script is allowed by its hash.
    assert set(re.findall(r'(?:src|href)="([^"]+)"', docs.text)) == {
        "/docs-static/swagger-ui-bundle.js", "/docs-static/swagger-ui.css", "/docs-static/favicon.png"}
    assert "'/openapi.json'" in docs.text and "http" not in docs.text.replace("http-equiv", "")
    script = re.search(r"<script>(.*?)</script>", docs.text, re.S).group(1).encode()
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    policy = docs.headers.get_list("content-security-policy")
    assert len(policy) == 1 and f"script-src 'self' 'sha256-{digest}'" in policy[0]
    bundle, = run(app, ("GET", "/docs-static/swagger-ui-bundle.js", {}))
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.content
    assert "/api/predict" in openapi.json()["paths"]
    answers = openapi.json()["paths"]["/api/predict"]["post"]["responses"]
    assert {"200", "400", "408", "413", "422", "500", "503"} <= set(answers), sorted(answers)
    assert "access-control-allow-origin" not in cross.headers
    allowed = create_app(served, Settings(cors_origins=("https://elsewhere.example",)))
    cross = run(allowed, ("OPTIONS", "/api/predict", {"headers": {
        "origin": "https://elsewhere.example", "access-control-request-method": "POST"}}))[0]
    assert cross.headers["access-control-allow-origin"] == "https://elsewhere.example"


def test_without_fastapi_offline_the_docs_are_off(served, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fastapi_offline" else find_spec(name, *a))
    docs, static = run(create_app(served), ("GET", "/docs", {}), ("GET", "/docs-static/swagger-ui.css", {}))
    assert docs.status_code == static.status_code == 404


def test_settings_refuse_nonsense():
    from fmnist.errors import UsageError

    with pytest.raises(UsageError, match="--max-upload"):
        Settings(max_upload=0)
    with pytest.raises(UsageError, match=r"max_upload \(--max-upload\) is at most 1,073,741,824 bytes"):
        Settings(max_upload=1024 ** 3 + 1)  # held in memory: the CLI's bound holds for the library too
    Settings(max_upload=1024 ** 3)
    with pytest.raises(UsageError, match="--queue-size"):
        Settings(queue_size=-1)
    Settings(cors_origins=("*", "http://localhost:8000", "http://[::1]:8000"))  # each one a browser can send


def test_a_model_whose_outputs_are_not_numbers_is_a_500_saying_so(served):
    from tests.evaluation.test_metrics import _overflowing

    r = post(create_app(_overflowing()), [("p.jpg", jpeg(7), "image/jpeg")])
    assert r.status_code == 500, r.text
    assert "outputs are not numbers (NaN) for 1 of 1 images" in r.json()["error"] and "NaN," not in r.text


def test_a_request_cancelled_at_shutdown_is_not_logged_as_an_application_error(monkeypatch, tmp_path):
    import logging

    import fmnist.serve as serve_module
    from fmnist.errors import FmnistError

    logger = logging.getLogger("uvicorn.error")
    monkeypatch.setattr(logger, "filters", [])
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)
    try:
        with pytest.raises(FmnistError):  # the filter is in place before anything else happens
            serve_module.serve(tmp_path / "no-model")
        try:
            raise asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded")
        except asyncio.CancelledError:
            logger.exception("Exception in ASGI application\n")
        logger.error("Cancel 1 running task(s), timeout graceful shutdown exceeded")
        try:
            raise ValueError("a real bug")
        except ValueError:
            logger.exception("Exception in ASGI application\n")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["Cancel 1 running task(s), timeout graceful shutdown exceeded",
                                              "Exception in ASGI application\n"]
    assert seen[1].exc_info[0] is ValueError


def test_a_saved_net_classifier_answers_its_own_labels(tmp_path):
    """Saved with save_model, a NetClassifier fitted on labels 3 and 7 loads as its network (columns
    0 and 1); predict and the API answer 3 or 7, as its predict() does, never the column."""
    from fmnist.estimators import NetClassifier
    from tests.conftest import learnable_images

    y = np.where(np.arange(60) % 2, 7, 3)
    x = learnable_images(y)
    clf = NetClassifier("flatten,dense:2", epochs=3, device="cpu").fit(x, y)
    fmnist.save_model(clf, tmp_path / "m")
    buf = io.BytesIO()
    Image.fromarray(x[1]).save(buf, "PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    own = clf.predict(x[1:2])[0]
    got = predict_files(tmp_path / "m", [tmp_path / "a.png"], top_k=2).predictions[0]
    assert got.label == own and {t["label"] for t in got.top_k} == {3, 7}
    answer = post(create_app(load_served(tmp_path / "m")), [("a.png", buf.getvalue(), "image/png")]).json()
    assert answer["predictions"][0]["label"] == own and {t["label"] for t in answer["predictions"][0]["top_k"]} == {3, 7}
