"""Fetch one image or video: data: URLs decoded, http(s) URLs fetched through the SSRF guard.

data: URLs must be ``data:<mime>;base64,<payload>`` with strict base64 (no whitespace, no
percent-encoding). Remote fetches connect to the address the guard validated (no second
DNS lookup), follow at most ``MAX_REDIRECTS`` redirects re-checking each hop, and run
under one deadline. Every failure becomes ``InvalidRequest`` (400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from urllib.parse import urljoin

import httpx

from inferd.errors import InvalidRequest
from inferd.media.guard import FETCH_FAILED, REFUSED, Resolver, Target, check_url, system_resolver
from inferd.settings import Settings

MAX_REDIRECTS = 3
KINDS = ("image", "video")


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def _failed(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=FETCH_FAILED)


def decode_data_url(url: str, *, max_bytes: int, kind: str, param: str) -> bytes:
    """The bytes of a ``data:<mime>;base64,<payload>`` URL; the size is checked before decoding."""
    label = f"{kind}_url"
    header, sep, payload = url[5:].partition(",")
    if not sep or header.lower().split(";")[-1].strip() != "base64":
        raise InvalidRequest(f"{label} data: URL must have the form data:<mime>;base64,<payload>; "
                             "only base64 payloads are accepted", param=param, code=REFUSED)
    if len(payload) > 4 * ((max_bytes + 2) // 3):
        raise InvalidRequest(f"{label} data: URL is too large: over this server's limit of {max_bytes} "
                             f"bytes (INFERD_MEDIA_MAX_BYTES); send a smaller {kind}", param=param, code=REFUSED)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{label} data: URL payload is not valid base64 (standard alphabet, padded, "
                             "no whitespace or percent-encoding)", param=param, code=REFUSED) from None
    if not data or len(data) > max_bytes:
        what = "is empty" if not data else f"is over this server's limit of {max_bytes} bytes"
        raise InvalidRequest(f"{label} data: URL payload {what}", param=param, code=REFUSED)
    return data


def _request(target: Target, kind: str) -> httpx.Request:
    """GET the validated address, with the original Host header and TLS name (SNI)."""
    url = httpx.URL(scheme=target.url.scheme, host=str(target.address), port=target.url.port,
                    raw_path=target.url.path.encode("ascii"))
    headers = {"Host": target.url.authority, "User-Agent": "inferd", "Accept": f"{kind}/*",
               "Accept-Encoding": "identity"}
    return httpx.Request("GET", url, headers=headers, extensions={"sni_hostname": target.url.host})


def _redirect_location(response: httpx.Response) -> str | None:
    if response.status_code in (301, 302, 303, 307, 308):
        return response.headers.get("location")
    return None


async def _read_body(response: httpx.Response, cap: int, label: str, kind: str, param: str) -> bytes:
    """The body, refused as soon as the declared or the counted size passes the cap."""
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise _failed(f"{label} is too large: the server declared {declared} bytes, over this server's "
                      f"limit of {cap} bytes (INFERD_MEDIA_MAX_BYTES); send a smaller {kind}", param)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > cap:
            raise _failed(f"{label} is too large: the server sent more than this server's limit of "
                          f"{cap} bytes (INFERD_MEDIA_MAX_BYTES); send a smaller {kind}", param)
        chunks.append(chunk)
    return b"".join(chunks)


class MediaFetcher:
    """Fetches image/video URLs for one server; safe to share between requests."""

    def __init__(self, settings: Settings, resolver: Resolver | None = None) -> None:
        self._settings = settings
        self._resolver = resolver or system_resolver
        self._ssl = httpx.create_ssl_context(trust_env=False)

    def timeout(self, kind: str) -> float:
        """Seconds allowed for one whole fetch of this kind ("image" or "video")."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        return self._settings.media_image_timeout if kind == "image" else self._settings.media_video_timeout

    async def fetch(self, url: str, *, kind: str, param: str) -> bytes:
        """The bytes behind a data: or http(s) URL; any failure is an ``InvalidRequest``."""
        timeout = self.timeout(kind)
        if url[:5].lower() == "data:":
            return decode_data_url(url, max_bytes=self._settings.media_max_bytes, kind=kind, param=param)
        label = f"{kind}_url {_shown(url)}"
        try:
            async with asyncio.timeout(timeout):
                return await self._fetch_remote(url, kind, param, timeout)
        except InvalidRequest:
            raise
        except (TimeoutError, httpx.TimeoutException):
            raise _failed(f"fetching {label} timed out after {timeout:g} s; use a faster host "
                          f"or send the {kind} as a data: URL", param) from None
        except httpx.HTTPError as exc:
            raise _failed(f"fetching {label} failed: could not connect or read the response "
                          f"({type(exc).__name__}: {exc}); check the URL", param) from None
        except Exception as exc:  # noqa: BLE001 - a media URL must never cause a 500
            raise _failed(f"fetching {label} failed ({type(exc).__name__}: {exc}); check the URL",
                          param) from None

    def _transport(self) -> httpx.AsyncHTTPTransport:
        """A fresh transport per fetch: no env proxies, no cookies, no pooled TLS connection reused
        across names, and no redirect handling of its own (every hop is checked here)."""
        return httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False,
                                        limits=httpx.Limits(max_keepalive_connections=0))

    async def _check(self, url: str, hop: int, kind: str, param: str) -> Target:
        try:
            return await check_url(url, self._settings, kind=kind, param=param, resolver=self._resolver)
        except InvalidRequest as exc:
            if hop == 0:
                raise
            raise InvalidRequest(f"{kind}_url redirected to {_shown(url)}, which is refused: {exc.message}",
                                 param=param, code=exc.code) from None

    async def _fetch_remote(self, url: str, kind: str, param: str, timeout: float) -> bytes:
        cap = self._settings.media_max_bytes
        async with self._transport() as transport:
            for hop in range(MAX_REDIRECTS + 1):
                target = await self._check(url, hop, kind, param)
                request = _request(target, kind)
                request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
                response = await transport.handle_async_request(request)
                try:
                    location = _redirect_location(response)
                    if location is None:
                        return await self._body(response, url, cap, kind, param)
                finally:
                    await response.aclose()
                url = urljoin(url, location.strip())
        raise _failed(f"{kind}_url was redirected more than {MAX_REDIRECTS} times; "
                      f"give the final URL directly", param)

    async def _body(self, response: httpx.Response, url: str, cap: int, kind: str, param: str) -> bytes:
        label = f"{kind}_url {_shown(url)}"
        if not 200 <= response.status_code < 300:
            raise _failed(f"fetching {label} failed: the server answered HTTP {response.status_code} "
                          f"{response.reason_phrase}; check the URL", param)
        return await _read_body(response, cap, label, kind, param)
