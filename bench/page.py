"""The page benchmark: two gunicorn servers (the book page with the boxes, and the same page
without them) and a small load generator on 127.0.0.1, run alternately, side by side.

Used by ``bench/run.py``.  The load generator is deliberately thin (``http.client``, one new
connection per request, as gunicorn's sync workers close them), so that its own cost per
request stays small next to the page's.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BOX_TAGS = re.compile(r"\{%\s*(similar_items|you_might_like)\b[^%]*%\}")
MARKERS = {"you_might_like": 'data-box="you-might-like"', "similar_items": 'data-box="similar-items"'}


def write_noboxes_templates(target: Path) -> Path:
    """A copy of the site's ``bookstore/book_detail.html`` without the two box tags.

    Generated from the real template at each run, so that the two pages differ by the boxes
    only, however the template changes.
    """
    source = (ROOT / "templates" / "bookstore" / "book_detail.html").read_text()
    stripped, n = BOX_TAGS.subn("", source)
    if n != 2:
        raise RuntimeError(f"expected 2 box tags in bookstore/book_detail.html, found {n}")
    out = target / "bookstore"
    out.mkdir(parents=True, exist_ok=True)
    (out / "book_detail.html").write_text(stripped)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A gunicorn process serving the demo site on 127.0.0.1."""

    def __init__(self, name: str, env: dict, log: Path, workers: int = 1) -> None:
        self.name, self.env, self.log, self.workers = name, env, log, workers
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self._log = open(self.log, "ab")  # noqa: SIM115
        command = [
            sys.executable, "-m", "gunicorn", "bookstore.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--worker-class", "sync",
            "--log-level", "warning", "--chdir", str(ROOT),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn ({self.name}) exited with {self.proc.returncode}; see {self.log}")
            try:
                status, _, _ = request(self.port, "/accounts/login/")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn ({self.name}) did not answer within 60 s; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # the master stops its workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def request(port: int, path: str, *, cookie: str = "", method: str = "GET", body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        hdrs = {"Cookie": cookie} if cookie else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, resp
    finally:
        conn.close()


def _cookies(resp: http.client.HTTPResponse, jar: dict) -> dict:
    for header in resp.msg.get_all("Set-Cookie") or []:
        for key, morsel in SimpleCookie(header).items():
            jar[key] = morsel.value
    return jar


def login(port: int, username: str, password: str) -> str:
    """Sign in through the login form; return the Cookie header of the session."""
    jar: dict = {}
    status, body, resp = request(port, "/accounts/login/")
    _cookies(resp, jar)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    if status != 200 or not match or "csrftoken" not in jar:
        raise RuntimeError(f"login page: HTTP {status}, no CSRF token")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1).decode(), "next": "/"}
    ).encode()
    status, _, resp = request(
        port, "/accounts/login/", method="POST", body=form, cookie=f"csrftoken={jar['csrftoken']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    _cookies(resp, jar)
    if status != 302 or "sessionid" not in jar:
        raise RuntimeError(f"login as {username!r} failed: HTTP {status}")
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def load(port: int, paths: list[str], cookie: str, concurrency: int = 1) -> tuple[list[float], float]:
    """GET every path (in order, split over ``concurrency`` threads); latencies and elapsed."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(part: list[str]) -> None:
        mine = []
        for path in part:
            t0 = time.perf_counter()
            status, _, _ = request(port, path, cookie=cookie)
            mine.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"{path}: HTTP {status}")
        with lock:
            latencies.extend(mine)

    parts = [paths[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    if concurrency == 1:
        worker(parts[0])
    else:
        threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return latencies, elapsed


def check_page(port: int, path: str, cookie: str, boxes: bool) -> dict:
    status, body, _ = request(port, path, cookie=cookie)
    html = body.decode("utf-8", "replace")
    found = {name: marker in html for name, marker in MARKERS.items()}
    if status != 200:
        raise RuntimeError(f"{path}: HTTP {status}")
    if boxes and not all(found.values()):
        raise RuntimeError(f"the page with the boxes lacks some: {found}")
    if not boxes and any(found.values()):
        raise RuntimeError(f"the page without the boxes has some: {found}")
    return {"bytes": len(body), **found}


def benchmark(env_with: dict, env_without: dict, products: list[str], logdir: Path, *, requests: int,
              rounds: int = 10, concurrency: int = 1, workers: int = 1, log=print) -> dict:  # fmt: skip
    """Serve both pages, sign in as the demo customer, warm up, then alternate rounds."""
    if not products:
        raise RuntimeError("no books to request")
    servers = {
        "with_boxes": Server("with boxes", env_with, logdir / "gunicorn-with.log", workers),
        "without_boxes": Server("without boxes", env_without, logdir / "gunicorn-without.log", workers),
    }
    try:
        for server in servers.values():
            server.start()
        cookie = login(servers["with_boxes"].port, "demo", "demo-reader")
        paths = [f"/books/{urllib.parse.quote(p)}/" for p in products]
        checks = {name: check_page(s.port, paths[0], cookie, name == "with_boxes") for name, s in servers.items()}
        for name, server in servers.items():  # warm up: caches, template loaders, connections
            load(server.port, paths * 2, cookie, concurrency)
        per_round = max(1, requests // rounds)
        sequence = [paths[i % len(paths)] for i in range(per_round)]
        lat: dict[str, list[float]] = {name: [] for name in servers}
        elapsed = {name: 0.0 for name in servers}
        for r in range(rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                latencies, seconds = load(servers[name].port, sequence, cookie, concurrency)
                lat[name].extend(latencies)
                elapsed[name] += seconds
            log(f"  page round {r + 1}/{rounds}: " + ", ".join(f"{n} {1000 * np.median(lat[n]):.2f} ms" for n in servers))
    finally:
        for server in servers.values():
            server.stop()
    out: dict = {"requests_per_variant": per_round * rounds, "rounds": rounds, "concurrency": concurrency,
                 "gunicorn_workers": workers, "books": len(paths), "checks": checks}  # fmt: skip
    for name in servers:
        a = np.asarray(lat[name])
        out[name] = {
            "requests": int(a.size),
            "requests_per_second": round(a.size / elapsed[name], 2),
            "mean_ms": round(1000 * a.mean(), 3),
            "p50_ms": round(1000 * float(np.percentile(a, 50)), 3),
            "p99_ms": round(1000 * float(np.percentile(a, 99)), 3),
        }
    w, wo = out["with_boxes"], out["without_boxes"]
    out["time_per_request_ratio"] = round(wo["requests_per_second"] / w["requests_per_second"], 4)
    out["p50_ratio"] = round(w["p50_ms"] / wo["p50_ms"], 4)
    out["p99_ratio"] = round(w["p99_ms"] / wo["p99_ms"], 4)
    return out
