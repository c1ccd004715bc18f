"""``fmnist serve`` under load: latency (p50, p95) and requests/s on loopback, batching on and off.

    python benchmarks/serve.py RUN [RUN...] [--clients 1,32] [--requests 200] [--payloads photo,image] [--out FILE]

For each run folder (e.g. an mlp-200 and a cnn-book run) and each setting of batching
(``max_batch`` 64, and 1: one forward pass per request), starts a real server on 127.0.0.1
(a subprocess, as ``fmnist serve`` runs) and, for each payload and number of concurrent
clients, posts ``--requests`` images, one per request, keeping that many requests in flight.
Payloads: ``photo``, a catalogue photo (:mod:`fmnist.inference.photos`, JPEG, about 500
pixels a side: the photo pipeline's work dominates); ``image``, a t10k image as a 28x28 PNG
(nothing to prepare: the model's work dominates, which is where batching can show). Every
request is timed from send to the last byte of its answer. The machine's load average before
and after is recorded with the figures: a shared machine makes every number slower, and the
figures of one run compare only with each other. Beside them, the model's own time for 32 images, one pass each against one pass
for all: what batching can save at most.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _child(run: str, max_batch: int) -> None:
    """The server process: ``fmnist serve RUN --port 0`` with the given batching."""
    from fmnist.serve import serve
    from fmnist.serve.app import Settings

    try:
        serve(run, port=0, settings=Settings(max_batch=max_batch),
              on_ready=lambda url: print(url, flush=True))
    except KeyboardInterrupt:
        pass


def _start(run: str, max_batch: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, __file__, "--child", run, "--max-batch", str(max_batch)],
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server for {run} did not start: {line!r}")
    return proc, match.group(0)


async def _load(url: str, bodies: list[bytes], clients: int) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    todo = list(enumerate(bodies))

    async def client(http):
        while todo:
            i, body = todo.pop()
            t0 = time.perf_counter()
            r = await http.post("/api/predict", files={"file": (f"{i}.jpg", body, "image/jpeg")})
            latencies.append(time.perf_counter() - t0)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await http.get("/api/health")
        # Not timed: the first photo loads the photo pipeline's libraries into the server.
        await http.post("/api/predict", files={"file": ("warm-up", bodies[0], "application/octet-stream")})
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {"clients": clients, "requests": len(bodies), "p50_ms": pct(0.5), "p95_ms": pct(0.95),
            "requests_per_s": round(len(bodies) / wall, 1), "statuses": {str(k): v for k, v in statuses.items()}}


PAYLOADS = {"photo": "a catalogue photo (JPEG, 480 x 480-640 pixels)", "image": "a 28x28 PNG (t10k image)"}


def _bodies(payload: str, n: int) -> list[bytes]:
    import io

    import fmnist
    from PIL import Image

    from fmnist.inference.photos import catalogue_photo

    _, (x, _) = fmnist.load_data()
    if payload == "photo":
        return [catalogue_photo(x[i], i) for i in range(n)]
    bodies = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(x[i]).save(buf, "PNG")
        bodies.append(buf.getvalue())
    return bodies


def _forward(run: str, n: int = 32, repeats: int = 5) -> dict:
    """The model alone, in this process: ``n`` t10k images as ``n`` passes of one and as one pass.

    Milliseconds, the best of ``repeats``.
    """
    import fmnist
    from fmnist.inference.predict import Input, predict_inputs
    from fmnist.serve.app import load_served

    served = load_served(run)
    _, (x, _) = fmnist.load_data()
    inputs = [Input(str(i), None, x[i], "as-is") for i in range(n)]
    predict_inputs(served.model, inputs[:2], top_k=3, class_names=served.class_names)
    one = together = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in inputs:
            predict_inputs(served.model, [i], top_k=3, class_names=served.class_names)
        one = min(one, time.perf_counter() - t0)
        t0 = time.perf_counter()
        predict_inputs(served.model, inputs, top_k=3, class_names=served.class_names)
        together = min(together, time.perf_counter() - t0)
    return {"images": n, "one_by_one_ms": round(1000 * one, 2), "one_pass_ms": round(1000 * together, 2)}


def measure(runs: list[str], clients: list[int], requests: int, payloads=("photo", "image"),
            batching=(64, 1)) -> dict:
    bodies = {p: _bodies(p, requests) for p in payloads}
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
           "load_average_before": [round(v, 2) for v in os.getloadavg()],
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
           "payloads": {p: PAYLOADS[p] for p in payloads}, "results": [], "forward": {}}
    for run in runs:
        model = json.loads((Path(run) / "model.json").read_text()).get("name", Path(run).name)
        # What batching can save at most: the model's own time, without HTTP or decoding.
        out["forward"][model] = _forward(run)
        for max_batch in batching:
            proc, url = _start(run, max_batch)
            try:
                for payload in payloads:
                    for c in clients:
                        row = {"model": model, "run": run, "payload": payload, "max_batch": max_batch,
                               **asyncio.run(_load(url, bodies[payload], c))}
                        print(json.dumps(row), file=sys.stderr, flush=True)
                        out["results"].append(row)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    out["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="run folders to serve")
    ap.add_argument("--clients", default="1,32", help="concurrent clients, comma-separated (default: 1,32)")
    ap.add_argument("--requests", type=int, default=200, help="requests per measurement (default: 200)")
    ap.add_argument("--payloads", default="photo,image",
                    help="what each request sends, comma-separated: photo, image (default: photo,image)")
    ap.add_argument("--out", type=Path, help="write the results JSON here, e.g. src/fmnist/measured/serve.json, "
                    "then make readme (default: print only)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--max-batch", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.max_batch)
        return 0
    if not args.runs:
        ap.error("give at least one run folder")
    payloads = args.payloads.split(",")
    unknown = set(payloads) - set(PAYLOADS)
    if unknown:
        ap.error(f"--payloads: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PAYLOADS)}")
    result = measure(args.runs, [int(c) for c in args.clients.split(",")], args.requests, payloads)
    if args.out:
        from fmnist._files import write_json

        write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
