"""A tiny HTTP client with cookies and CSRF, for driving the real server from tests."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request


class Session:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, path: str, data: dict | None = None, *, follow: bool = True) -> tuple[int, str, float, dict]:
        url = path if path.startswith("http") else self.base + path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        headers = {"Referer": self.base + "/"}
        started = time.perf_counter()
        try:
            with self.opener.open(urllib.request.Request(url, data=body, headers=headers), timeout=60) as r:
                status, text, head = r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, text, head = e.code, e.read().decode(errors="replace"), dict(e.headers)
        elapsed = time.perf_counter() - started
        if follow and status in (301, 302, 303) and "Location" in head:
            return self.request(urllib.parse.urljoin(url, head["Location"]), follow=True)
        return status, text, elapsed, head

    def csrf(self) -> str:
        return next((c.value for c in self.jar if c.name == "csrftoken"), "")

    def post(self, path: str, data: dict | None = None, *, follow: bool = True):
        return self.request(path, {**(data or {}), "csrfmiddlewaretoken": self.csrf()}, follow=follow)

    def sign_in(self, username: str, password: str, login_path: str = "/accounts/login/") -> None:
        self.request(login_path)
        status, text, _, _ = self.post(login_path, {"username": username, "password": password, "next": "/"})
        assert status == 200 and "Sign out" in text or "log out" in text.lower(), f"sign-in as {username} failed"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


BOX = re.compile(r'data-box="you-might-like".*?</section>', re.S)
PRODUCT = re.compile(r'class="card-title" href="/books/([^/]+)/"')


def box_products(html: str) -> list[str] | None:
    """The products in the page's "You might like" box, or None when there is no box."""
    match = BOX.search(html)
    return PRODUCT.findall(match.group(0)) if match else None
