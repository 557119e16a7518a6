"""Fetching a web page named in a post request: hostile input, handled as such.

    page = await fetch_page("https://example.org/gqa", settings=s)   # FetchError says why not

- Schemes: http and https only; no credentials in the URL.
- No private-network targets (SSRF): every address the host resolves to must be public (not
  loopback, private, link-local, multicast, reserved, CGNAT or unspecified, IPv4-mapped forms
  included) unless the host or address is listed in NEWSROOM_FETCH_ALLOW_HOSTS. The connection
  goes to the address that was checked (the URL's host is kept for Host and TLS SNI), so a DNS
  answer that changes between the check and the connect (rebinding) cannot reach another one.
- Redirects are followed by hand (NEWSROOM_FETCH_MAX_REDIRECTS), each hop checked like the first.
- Bounded: one time budget for the whole fetch (NEWSROOM_FETCH_TIMEOUT_S) and a body cap on the
  decoded bytes (NEWSROOM_FETCH_MAX_BYTES; a gzip bomb stops at the cap too).
- Content types: HTML (main text extracted with trafilatura) and plain text / Markdown.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

import httpx

from config import Settings, get_settings

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("http", "https")
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown", "text/x-markdown")
USER_AGENT = "newsroom-researcher/1.0 (+fetches pages named in a post request)"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class FetchError(RuntimeError):
    """A URL that was not fetched, with the reason a person can act on."""


class FetchRefused(FetchError):
    """Refused by policy before or during the fetch (scheme, address, type, size)."""


@dataclass(frozen=True)
class FetchedPage:
    url: str  # as requested
    final_url: str  # after redirects
    status: int
    content_type: str
    title: str
    text: str  # the page's main text (Markdown-ish for HTML)
    bytes_read: int


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return False
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified or not addr.is_global)


def check_url(url: str) -> httpx.URL:
    """The URL parsed, or FetchRefused: http(s) only, a host, no credentials."""
    try:
        u = httpx.URL(url)
    except Exception as err:  # noqa: BLE001 - httpx.InvalidURL and friends
        raise FetchRefused(f"not a valid URL: {err}") from None
    if u.scheme not in ALLOWED_SCHEMES:
        raise FetchRefused(f"scheme {u.scheme or '(none)'!r} is not allowed (only http and https)")
    if not u.host:
        raise FetchRefused("the URL has no host")
    if u.userinfo:
        raise FetchRefused("credentials in a URL are not allowed")
    return u


async def resolve_checked(host: str, port: int, allow: list[str]) -> str:
    """One address of `host` that the SSRF rule allows (all of them must be allowed)."""
    allowed = {h.lower() for h in allow}
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addrs = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise FetchError(f"cannot resolve {host}: {err.strerror or err}") from None
        addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addrs:
            raise FetchError(f"{host} has no address")
    host_allowed = host.lower() in allowed
    for a in addrs:
        if not (_public(a) or host_allowed or str(a) in allowed):
            raise FetchRefused(f"{host} resolves to {a}, a non-public address (set NEWSROOM_FETCH_ALLOW_HOSTS "
                               "to allow it)")
    return str(addrs[0])


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def extract_main_text(html: str, url: str) -> tuple[str, str]:
    """(title, main text) of an HTML page; CPU-bound, run it in a thread."""
    import trafilatura

    text = trafilatura.extract(html, url=url, output_format="markdown", include_comments=False,
                               include_tables=True, favor_recall=True) or ""
    meta = trafilatura.extract_metadata(html, default_url=url)
    title = (meta.title if meta and meta.title else "") or ""
    return title.strip(), text.strip()


async def fetch_page(url: str, *, settings: Settings | None = None, client: httpx.AsyncClient | None = None) -> FetchedPage:
    """Fetch one page under the rules above; FetchError (FetchRefused for policy) if not."""
    s = settings or get_settings()
    try:
        async with asyncio.timeout(s.fetch_timeout_s):  # the network part: connect, redirects, body
            final, status, media, text, size = await _fetch(url, s, client)
    except TimeoutError:
        raise FetchError(f"timed out after {s.fetch_timeout_s:g} s") from None
    if media in HTML_TYPES:
        title, main = await asyncio.to_thread(extract_main_text, text, final)  # bounded input: <= max bytes
    else:
        title, main = "", text.strip()
    if not main:
        raise FetchError("no readable text on the page")
    return FetchedPage(url=url, final_url=final, status=status, content_type=media,
                       title=title or (httpx.URL(final).host or final), text=main, bytes_read=size)


async def _fetch(url: str, s: Settings, client: httpx.AsyncClient | None) -> tuple[str, int, str, str, int]:
    """(final URL, status, media type, decoded body, bytes read) of the page, redirects checked."""
    own = client is None
    # trust_env=False: no proxy from the environment (it would connect for us, unchecked).
    client = client or httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         timeout=httpx.Timeout(s.fetch_timeout_s))
    try:
        current = url
        for _hop in range(s.fetch_max_redirects + 1):
            u = check_url(current)
            port = u.port or (443 if u.scheme == "https" else 80)
            ip = await resolve_checked(u.host, port, s.fetch_allow_hosts)
            pinned = u.copy_with(host=ip)  # connect to the checked address, not a fresh DNS answer
            headers = {"Host": u.netloc.decode("ascii"), "User-Agent": USER_AGENT,
                       "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9"}
            request = client.build_request("GET", pinned, headers=headers,
                                           extensions={"sni_hostname": u.host} if u.scheme == "https" else {})
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as err:
                raise FetchError(f"{type(err).__name__}: {err}") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(f"HTTP {response.status_code} redirect without a Location")
                    current = str(u.join(location))
                    continue
                if response.status_code >= 400:
                    raise FetchError(f"HTTP {response.status_code}")
                media = _media_type(response.headers.get("content-type", ""))
                if media not in HTML_TYPES + TEXT_TYPES:
                    raise FetchRefused(f"content type {media or '(none)'!r} is not a page (HTML or text)")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > s.fetch_max_bytes:
                    raise FetchRefused(f"the page is {int(declared)} bytes; the limit is {s.fetch_max_bytes}")
                body = bytearray()
                async for part in response.aiter_bytes():
                    body += part
                    if len(body) > s.fetch_max_bytes:
                        raise FetchRefused(f"the page is larger than the limit of {s.fetch_max_bytes} bytes")
                charset = response.charset_encoding or "utf-8"
                try:
                    text = bytes(body).decode(charset, errors="replace")
                except LookupError:
                    text = bytes(body).decode("utf-8", errors="replace")
            finally:
                await response.aclose()
            return current, response.status_code, media, text, len(body)
        raise FetchError(f"more than {s.fetch_max_redirects} redirects")
    finally:
        if own:
            await client.aclose()
