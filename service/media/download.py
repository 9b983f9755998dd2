"""Download media bytes: bounded concurrency, bounded retries, a host allowlist, a streaming size limit.

Bytes in, bytes (or a short, storable reason) out; nothing here decodes images or knows what a post means.

Guards, each checked where it cannot be bypassed:

* **hosts**: every URL, and every redirect hop, is checked against ``allowed_hosts`` *before* a connection is
  opened (redirects are followed by hand, at most ``MAX_REDIRECTS``). An entry is a host and a port:
  ``host:port`` (``[::1]:8080`` for IPv6) allows that port only, whatever the scheme; a bare ``host`` allows the
  scheme's default port only (443 for https, 80 for http), so an allowed name on another port (another service
  on the same machine) is refused. The scheme must be ``https``; plain ``http`` is allowed only to loopback
  hosts (127.0.0.0/8, ``::1``, ``localhost``) so tests and a local sandbox work.
* **local files**, the one place that decides them: a ``file://`` URL is read from disk only for a media of kind
  ``file`` (the folder source's) and only when its path, symlinks resolved, lies under ``local_root`` (the
  configured ``folder:DIR``); everything else (a ``file://`` URL in an X answer, a folder file after the source
  changed) is refused unread. Remote media get http(s) only.
* **size**: a ``Content-Length`` above ``max_bytes`` is refused before the body is read; otherwise the body is
  streamed and reading stops (the connection is dropped) as soon as more than ``max_bytes`` have arrived.
* **time**: ``timeout`` bounds each network step (connect, each read); one attempt as a whole is bounded by
  ``attempt_timeout`` (default four times ``timeout``) so a server trickling bytes cannot hold a slot forever.
* **retries**: connect errors, timeouts, HTTP 5xx and 429 are retried ``retries`` times (so at most
  ``retries + 1`` attempts) with exponential backoff and jitter; a ``Retry-After`` up to ``max_retry_after``
  seconds is honoured, a longer one ends the attempts for this cycle. Other 4xx are not retried.

A failed :class:`Download` says whether trying again on a later cycle makes sense (``retryable``: timeouts,
5xx, 429, connection errors) or not (404, too large, host not allowed, ...), so the pipeline can store the
reason and decide.

pbs.twimg.com size variants (see ``variant_url``): photos are fetched as ``small`` (at most 680 px on the long
side) by default, which is plenty for a 224-px model and a fraction of the bytes of ``orig``.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import random
import ssl
import stat
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

try:  # HTTP/2 when the optional h2 package is there (pip install 'httpx[http2]'); HTTP/1.1 otherwise.
    import h2  # noqa: F401

    HTTP2 = True
except ImportError:  # pragma: no cover - depends on the environment
    HTTP2 = False

log = logging.getLogger(__name__)

#: Hosts X serves media from. ``default_allowed_hosts`` adds the configured API host (a sandbox, a proxy).
X_MEDIA_HOSTS = frozenset({"pbs.twimg.com", "video.twimg.com", "abs.twimg.com"})
MAX_REDIRECTS = 5
DEFAULT_USER_AGENT = "nijifeed/0.1 (+media downloader)"
#: Size names pbs.twimg.com understands; ``WxH`` forms (``360x360``, ``900x900``, ``4096x4096``) are accepted too.
VARIANTS = frozenset({"thumb", "small", "medium", "large", "orig"})
#: Extensions turned into ``?format=<ext>`` by ``variant_url``.
VARIANT_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp"})
#: pbs.twimg.com paths that do not take ``format``/``name`` (avatars use ``_normal``/``_400x400`` suffixes).
_PBS_NO_VARIANTS = ("/profile_images/", "/profile_banners/")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
_DEFAULT_PORTS = {"https": 443, "http": 80}
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_MAX_ERROR_CHARS = 200


# ----------------------------------------------------------------------------------------------- pure helpers


def default_allowed_hosts(api_base_url: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """X's media hosts (https, port 443), plus the host and port of the configured API base URL (so a sandbox's
    media are allowed), plus ``extra`` (``host`` or ``host:port``). Entries are normalized by ``allowed_entry``."""
    hosts = set(X_MEDIA_HOSTS)
    if api_base_url:
        entry = allowed_entry(api_base_url)
        if entry:
            hosts.add(entry)
    hosts.update(entry for entry in (allowed_entry(h) for h in extra if h and h.strip()) if entry)
    return frozenset(hosts)


def allowed_entry(value: str) -> str | None:
    """An allowlist entry in its one spelling: ``host`` (the scheme's default port) or ``host:port``, lower-cased,
    without a trailing dot, IPv6 hosts bracketed when a port follows. ``value`` may be ``host``, ``host:port``,
    ``[v6]:port``, a bare IPv6 address, or a URL (its host and explicit port). None when it names no host."""
    text = value.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            host, port = parts.hostname, parts.port
        except ValueError:
            return None
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        port = int(digits) if digits.isdigit() else None
        if port is None:
            return None
    else:
        host, port = text, None  # a name, an IPv4 address, or a bare IPv6 address
    host = _norm_host(host or "")
    if not host or port is not None and not 0 < port < 65536:
        return None
    return _host_port(host, port) if port is not None else host


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def valid_variant(variant: str) -> bool:
    """Whether ``variant`` is a size name pbs.twimg.com serves (``small``, ``orig``, ``900x900``, ...)."""
    if variant in VARIANTS:
        return True
    width, sep, height = variant.partition("x")
    return bool(sep) and width.isdigit() and height.isdigit()


def variant_url(url: str, variant: str | None) -> str:
    """The URL of the ``variant`` size of an image URL, in the form pbs.twimg.com serves.

    X gives photo URLs as ``https://pbs.twimg.com/media/<id>.<ext>`` (``ext`` jpg, png or webp); the same image is
    served at ``https://pbs.twimg.com/media/<id>?format=<ext>&name=<variant>``. The rule, for any http(s) host
    (so a sandbox serving ``/media/<id>.jpg?format=jpg&name=small`` is exercised the same way):

    * a last path segment ending in ``.jpg``/``.jpeg``/``.png``/``.webp`` (optionally with the legacy ``:large``
      style suffix) loses the extension, which becomes ``format=<ext>``; ``name=<variant>`` follows; any other
      query parameters are kept after them;
    * a URL that already has ``format`` gets its ``name`` replaced (or added), everything else kept as it is;
    * anything else (no extension and no ``format``, ``file://`` URLs, pbs avatars and banners, or ``variant``
      empty/``None``) is returned unchanged.

    ``orig`` is a variant like the others (``name=orig``: full size). Video and GIF previews on pbs
    (``/ext_tw_video_thumb/...jpg``, ``/tweet_video_thumb/...jpg``) follow the same rule. The function is
    idempotent: applying it to its own result changes nothing.
    """
    if not variant:
        return url
    if not valid_variant(variant):
        raise ValueError(f"unknown image variant {variant!r} (use one of {sorted(VARIANTS)} or WxH)")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return url
    host = _norm_host(parts.hostname or "")
    if host == "pbs.twimg.com" and any(marker in parts.path for marker in _PBS_NO_VARIANTS):
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    keys = {k for k, _ in query}
    if "format" in keys:
        if "name" in keys:
            query = [(k, variant if k == "name" else v) for k, v in query]
        else:
            query.append(("name", variant))
        return urlunsplit(parts._replace(query=urlencode(query, safe=":")))
    head, slash, last = parts.path.rpartition("/")
    stem, dot, ext = last.rpartition(".")
    ext, _, _legacy_size = ext.partition(":")  # ".../<id>.jpg:large", the old way of naming a size
    if not (slash and dot and stem and ext.lower() in VARIANT_EXTENSIONS):
        return url
    fmt = ext.lower()
    rest = [(k, v) for k, v in query if k != "name"]
    new_query = urlencode([("format", fmt), ("name", variant), *rest], safe=":")
    return urlunsplit(parts._replace(path=f"{head}/{stem}", query=new_query))


def redact_url(url: str) -> str:
    """The URL fit for a log line: no user info, and no query parameters other than ``format`` and ``name``
    (media URLs should carry no tokens, but a signed URL from a proxy might)."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "file":
            return url
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "<unparseable url>"
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in ("format", "name")]
    query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def check_url(url: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why ``url`` may not be fetched (a short reason), or ``None`` when it may. No I/O: this runs before any
    connection, on the first URL and on every redirect target. ``allowed_hosts``: entries as ``allowed_entry``
    spells them; the URL's host *and* port (the scheme's default when it names none) must be allowed."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return "invalid url"
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return f"scheme not allowed: {scheme or 'none'}"
    if not host:
        return "invalid url: no host"
    host = _norm_host(host)
    default = _DEFAULT_PORTS[scheme]
    effective = default if port is None else port
    if not (_host_port(host, effective) in allowed_hosts or effective == default and host in allowed_hosts):
        known = host in allowed_hosts or any(entry.rpartition(":")[0].strip("[]") == host for entry in allowed_hosts)
        what = f"port not allowed: {_host_port(host, effective)}" if known else f"host not allowed: {host}"
        return what[:_MAX_ERROR_CHARS]
    if scheme == "http" and not _is_loopback(host):
        return f"plain http not allowed: {host}"
    return None


def _norm_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# ----------------------------------------------------------------------------------------------- results


@dataclass
class Download:
    """The outcome of fetching one media reference. Either ``data`` is set (``ok``) or ``error`` says why not,
    short enough to store ("HTTP 404", "too large (>20000000 bytes)", "timeout after 4 attempts")."""

    media_key: str
    url: str  # the URL requested (after the size variant was applied); see final_url for redirects
    data: bytes | None = None
    error: str | None = None
    status: int | None = None  # the last HTTP status seen, if any
    attempts: int = 0
    retryable: bool = False  # failed, but worth trying again on a later cycle (timeouts, 5xx, 429, network)
    final_url: str | None = None  # where the bytes came from, when a redirect was followed
    content_type: str | None = None
    elapsed: float = field(default=0.0, compare=False)  # seconds, all attempts and backoff included

    @property
    def ok(self) -> bool:
        return self.data is not None and self.error is None

    def __repr__(self) -> str:  # never dump megabytes of bytes into a log or a test report
        size = "None" if self.data is None else f"<{len(self.data)} bytes>"
        return (
            f"Download(media_key={self.media_key!r}, url={redact_url(self.url)!r}, data={size}, error={self.error!r},"
            f" status={self.status}, attempts={self.attempts}, retryable={self.retryable})"
        )


class _Failure(Exception):
    """One attempt failed; ``retryable`` says whether another attempt in this cycle may help."""

    def __init__(
        self, reason: str, *, retryable: bool, status: int | None = None, delay: float | None = None, stop: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.delay = delay  # the server's Retry-After, when it gave one we honour
        self.stop = stop  # retryable later, but not within this cycle (a long Retry-After)


# ----------------------------------------------------------------------------------------------- downloader


class Downloader:
    """Fetch media over one shared ``httpx.AsyncClient``. Use as ``async with Downloader(...) as dl:``.

    ``concurrency`` bounds the requests in flight across ``fetch`` and ``fetch_many`` together. ``fetch`` never
    raises for a failed download: it returns a :class:`Download` whose ``error`` says why.
    """

    def __init__(
        self,
        *,
        allowed_hosts: frozenset[str],
        concurrency: int = 4,
        timeout: float = 15.0,
        retries: int = 3,
        max_bytes: int = 20_000_000,
        photo_variant: str | None = "small",
        user_agent: str = DEFAULT_USER_AGENT,
        attempt_timeout: float | None = None,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        max_retry_after: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        local_root: str | os.PathLike[str] | None = None,
    ) -> None:
        """``allowed_hosts``: the host allowlist (see the module docstring; entries are normalized here);
        ``local_root``: the folder whose files media of kind ``file`` may be read from (the folder source's);
        None: no local file is ever read."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        if timeout <= 0 or max_bytes < 1:
            raise ValueError("timeout and max_bytes must be positive")
        if photo_variant and not valid_variant(photo_variant):
            raise ValueError(f"unknown image variant {photo_variant!r} (use one of {sorted(VARIANTS)} or WxH)")
        self.allowed_hosts = frozenset(e for e in (allowed_entry(h) for h in allowed_hosts) if e)
        self.local_root = Path(os.path.realpath(Path(local_root).expanduser())) if local_root is not None else None
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.max_bytes = max_bytes
        self.photo_variant = photo_variant
        self.user_agent = user_agent
        self.attempt_timeout = attempt_timeout if attempt_timeout is not None else 4 * timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._transport = transport
        self._trust_env = trust_env
        self._verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._semaphore = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None
        self._workers: set[asyncio.Task] = set()  # fetch_many's, cancelled by aclose if still running

    @property
    def http2(self) -> bool:
        return HTTP2 and self._transport is None

    async def __aenter__(self) -> Downloader:
        self._client = httpx.AsyncClient(
            http2=self.http2,
            transport=self._transport,
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,  # followed by hand, so every hop's host is checked before connecting
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            headers={
                "User-Agent": self.user_agent,
                "Accept": "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8,*/*;q=0.5",
                "Accept-Encoding": "identity",  # images are compressed already; and no decompression bombs
            },
            trust_env=self._trust_env,
            verify=self._verify,  # certificates are always verified; a context only replaces the default CAs
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        workers, self._workers = self._workers, set()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- public API -----------------------------------------------------------------------------------------

    def url_for(self, url: str) -> str:
        """The URL that ``fetch`` requests for ``url``: the configured size variant (photos and previews)."""
        return variant_url(url, self.photo_variant)

    async def fetch(self, media_key: str, url: str, kind: str | None = None) -> Download:
        """Fetch one URL (``https``, loopback ``http``, or for ``kind="file"`` a ``file://`` URL under
        ``local_root``) within the concurrency bound. ``kind``: the media's kind (``photo``, ``file``, ...);
        None counts as remote."""
        async with self._semaphore:
            return await self._fetch(media_key, url, kind)

    async def fetch_many(
        self, items: Iterable[tuple[str, str] | tuple[str, str, str]]
    ) -> AsyncGenerator[Download, None]:
        """Fetch ``(media_key, url, kind)`` items (or ``(media_key, url)``: remote), yielding each
        :class:`Download` as soon as it completes.

        At most ``concurrency`` requests run at once, and at most ``concurrency`` finished downloads wait for the
        caller, so a slow consumer (feature extraction) pauses the downloads rather than filling memory. ``items``
        is read lazily. Leaving the loop early cancels what is still in flight: at once when the iterator is
        closed (``async with contextlib.aclosing(dl.fetch_many(items)) as results:``), else when it is garbage
        collected or, at the latest, when the downloader closes.
        """
        iterator = iter(items)
        queue: asyncio.Queue[Download | BaseException | None] = asyncio.Queue(maxsize=self.concurrency)

        async def worker() -> None:
            try:
                for item in iterator:  # one shared iterator: each item is taken by exactly one worker
                    kind = item[2] if len(item) > 2 else None
                    await queue.put(await self.fetch(item[0], item[1], kind))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - a bug or the caller's iterable failing: hand it over
                await queue.put(exc)
                return
            await queue.put(None)  # not in a finally: a cancelled worker must not block on a full queue

        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        self._workers.update(workers)
        running = len(workers)
        try:
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._workers.difference_update(workers)

    # -- internals ------------------------------------------------------------------------------------------

    async def _fetch(self, media_key: str, url: str, kind: str | None) -> Download:
        started = time.monotonic()
        if kind == "file" and url.lower().startswith("file:"):
            result = await self._read_file(media_key, url)
        else:  # remote: http(s) only; check_url refuses file:// and every other scheme
            try:
                wanted = self.url_for(url)
            except ValueError:  # urlsplit refuses it (a bad IPv6 literal, ...)
                wanted = None
            if wanted is None:
                result = Download(media_key, url, error="invalid url")
            else:
                result = await self._fetch_http(media_key, wanted)
        result.elapsed = time.monotonic() - started
        if result.ok:
            log.debug("fetched %s (%d bytes, %d attempt(s))", redact_url(result.url), len(result.data or b""),
                      result.attempts)
        else:
            log.warning("media %s: %s (%s)%s", media_key, result.error, redact_url(result.url),
                        " [retryable]" if result.retryable else "")
        return result

    async def _fetch_http(self, media_key: str, url: str) -> Download:
        if self._client is None:
            raise RuntimeError("Downloader used outside `async with`")
        reason = check_url(url, self.allowed_hosts)
        if reason:
            return Download(media_key, url, error=reason, attempts=0, retryable=False)
        max_attempts = self.retries + 1
        failure: _Failure | None = None
        attempt = 0
        for attempt in range(1, max_attempts + 1):
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    data, status, final_url, content_type = await self._attempt(url)
                return Download(media_key, url, data=data, status=status, attempts=attempt,
                                final_url=final_url if final_url != url else None, content_type=content_type)
            except _Failure as exc:
                failure = exc
            except (TimeoutError, httpx.TimeoutException):
                failure = _Failure("timeout", retryable=True)
            except httpx.UnsupportedProtocol:
                failure = _Failure("unsupported protocol", retryable=False)
            except httpx.InvalidURL:
                failure = _Failure("invalid url", retryable=False)
            except (httpx.TransportError, OSError) as exc:  # connect errors, resets, protocol errors
                failure = _Failure(f"connection error ({type(exc).__name__})", retryable=True)
            except httpx.HTTPError as exc:  # e.g. a body that does not match its Content-Encoding
                failure = _Failure(f"bad response ({type(exc).__name__})", retryable=True)
            if not failure.retryable or failure.stop or attempt == max_attempts:
                break
            await asyncio.sleep(self._delay(attempt, failure.delay))
        assert failure is not None
        reason = failure.reason
        if failure.retryable and not failure.stop:
            reason = f"{reason} after {attempt} attempt{'s' if attempt != 1 else ''}"
        return Download(media_key, url, error=reason[:_MAX_ERROR_CHARS], status=failure.status, attempts=attempt,
                        retryable=failure.retryable)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    async def _attempt(self, url: str) -> tuple[bytes, int, str, str | None]:
        """One attempt: follow up to MAX_REDIRECTS redirects, checking each target's host before connecting."""
        assert self._client is not None
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            reason = check_url(current, self.allowed_hosts)
            if reason:
                raise _Failure(f"redirect refused: {reason}" if current != url else reason, retryable=False)
            request = self._client.build_request("GET", current)
            response = await self._client.send(request, stream=True)
            try:
                status = response.status_code
                if status in _REDIRECT_CODES:
                    location = response.headers.get("location")
                    if not location:
                        raise _Failure(f"HTTP {status} without Location", retryable=False, status=status)
                    current = str(response.url.join(location))
                    continue
                if status == 200:
                    data = await self._read_body(response)
                    return data, status, current, response.headers.get("content-type")
                raise self._status_failure(response)
            finally:
                await response.aclose()
        raise _Failure(f"too many redirects (>{MAX_REDIRECTS})", retryable=False)

    def _status_failure(self, response: httpx.Response) -> _Failure:
        status = response.status_code
        if status == 429 or status >= 500:
            after = _retry_after(response.headers.get("retry-after"))
            if after is not None and after > self.max_retry_after:
                return _Failure(f"HTTP {status} (retry after {after:.0f}s)", retryable=True, status=status,
                                stop=True)
            return _Failure(f"HTTP {status}", retryable=True, status=status, delay=after)
        return _Failure(f"HTTP {status}", retryable=False, status=status)

    async def _read_body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _Failure(f"too large (>{self.max_bytes} bytes)", retryable=False, status=response.status_code)
        body = bytearray()
        async for chunk in response.aiter_bytes(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:  # stop reading now: the caller closes the response, dropping the rest
                raise _Failure(f"too large (>{self.max_bytes} bytes)", retryable=False, status=response.status_code)
        return bytes(body)

    async def _read_file(self, media_key: str, url: str) -> Download:
        try:
            path = file_url_path(url)
        except ValueError as exc:
            return Download(media_key, url, error=str(exc), attempts=1)
        if self.local_root is None:
            return Download(media_key, url, error="local files not allowed: no folder source", attempts=0)
        path = Path(os.path.realpath(path))  # symlinks resolved: a link out of the folder is out of the folder
        if not path.is_relative_to(self.local_root):
            return Download(media_key, url, error="local file outside the source folder", attempts=0)
        try:
            data = await asyncio.to_thread(_read_limited, path, self.max_bytes)
        except _Failure as exc:
            return Download(media_key, url, error=exc.reason, attempts=1, retryable=exc.retryable)
        return Download(media_key, url, data=data, attempts=1)


def file_url_path(url: str) -> Path:
    """The absolute path a ``file://`` URL names (``file:///abs/path`` or ``file://localhost/abs/path``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise ValueError("not a file url")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file url with a host not allowed: {parts.netloc}"[:_MAX_ERROR_CHARS])
    path = Path(unquote(parts.path))
    if not parts.path.startswith("/") or not path.is_absolute():
        raise ValueError("file url must name an absolute path")
    return path


def _read_limited(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes``; the size is checked before reading, and at most
    ``max_bytes + 1`` bytes are read so a file that grew after the check is still refused."""
    try:
        # O_NONBLOCK: opening a FIFO someone left in the folder must not hang the worker thread.
        # O_NOFOLLOW: the path was resolved; a symlink put in its place since is not followed out of the folder.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _Failure("no such file", retryable=False) from None
    except (IsADirectoryError, NotADirectoryError):
        raise _Failure("not a regular file", retryable=False) from None
    except PermissionError:
        raise _Failure("permission denied", retryable=False) from None
    except OSError as exc:
        raise _Failure(f"cannot read ({exc.strerror or type(exc).__name__})", retryable=True) from None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _Failure("not a regular file", retryable=False)
    if info.st_size > max_bytes:
        os.close(fd)
        raise _Failure(f"too large (>{max_bytes} bytes)", retryable=False)
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise _Failure(f"cannot read ({exc.strerror or type(exc).__name__})", retryable=True) from None
    if len(data) > max_bytes:
        raise _Failure(f"too large (>{max_bytes} bytes)", retryable=False)
    return data
