"""The HTTP transport: urllib3 pools built once per connection, and the sending of one call.

Calls go to urllib3 directly (requests' own transport): requests' machinery above it (request
preparation, adapters, case-insensitive dicts, cookie jars, hooks) was over 40% of the CPU of
each call, and the daemon uses none of what it offers: it follows no redirect, retries nothing
at this level (``retry.py`` does), keeps cookies in its own ``AuthState`` and reads the
environment once. So a ``Transport`` is one ``PoolManager`` (a
``ProxyManager`` when the environment names a proxy for its URL) with ``retries=False``, an
explicit ``urllib3.Timeout`` (connect, read), a pool of ``concurrency + 2`` connections per
host and ``User-Agent: creatio-attach``; ``send`` never follows a redirect.

The environment is read here, once, when the connection is made (requests' rules, through its
helpers): ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` (either case) pick the
proxy for a URL; ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` the CA bundle when ``ca_bundle`` is
unset and ``verify_tls`` on. TLS is verified by default against certifi's bundle (as requests
does); ``ca_bundle`` (a file or a directory) replaces it; ``verify_tls = false`` turns it off.

A body is ``bytes`` or a sized reader (``len()`` and ``read``, e.g. ``upload.RangeReader``),
always sent with a ``Content-Length`` and never with chunked transfer encoding. A local file
that fails while its body is sent raises ``LocalReadError`` out of urllib3; ``send`` turns it
back into the project error it carries, and every urllib3 failure into a project error
(``http.error_from_exception``). Imports ``urllib3`` (and requests' proxy and CA helpers only);
must not import the session, upload or query modules.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests.utils
import urllib3
from urllib3.exceptions import HTTPError, LocationValueError, ProxySchemeUnknown
from urllib3.util import make_headers

from creatio_attach.config import CreatioSettings
from creatio_attach.errors import ConfigError, CreatioAttachError

from .http import error_from_exception, where
from .reply import Reply


class SizedReader(Protocol):
    """A streamed body: its length up front, then its bytes by ``read``."""

    def __len__(self) -> int: ...

    def read(self, size: int = -1, /) -> bytes: ...


Payload = bytes | SizedReader | None


class LocalReadError(Exception):
    """A local file failed while urllib3 was sending it; ``error`` is the project error.

    Deliberately not an ``OSError``: urllib3 would report an OSError as a network failure.
    """

    def __init__(self, error: CreatioAttachError) -> None:
        super().__init__(str(error))
        self.error = error


def environment_proxies(url: str) -> dict[str, str]:
    """The proxies requests would take from the environment for ``url`` (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY``, lower case first; none when ``NO_PROXY`` covers its host),
    read now, once."""
    return dict(requests.utils.get_environ_proxies(url, no_proxy=None))


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment names for ``url`` (``http://`` added when it has no
    scheme, as requests does), or None for a direct connection."""
    proxy = requests.utils.select_proxy(url, environment_proxies(url))
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def environment_verify(verify: bool | str) -> bool | str:
    """With TLS verification on and no ``ca_bundle``: ``REQUESTS_CA_BUNDLE``, then
    ``CURL_CA_BUNDLE``, as requests with ``trust_env`` would (read once)."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


def tls_options(settings: CreatioSettings) -> dict[str, Any]:
    """urllib3's TLS keywords for the settings (and the environment, read now)."""
    verify = environment_verify(
        str(settings.ca_bundle) if settings.ca_bundle is not None else settings.verify_tls
    )
    if verify is False:
        return {"cert_reqs": "CERT_NONE"}
    bundle = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    if Path(bundle).is_dir():
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": bundle}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}


def body_headers(body: Payload) -> dict[str, str]:
    """The framing of a body: its ``Content-Length`` (urllib3 would send a reader chunked)."""
    return {} if body is None else {"Content-Length": str(len(body))}


class Transport:
    """One pool manager for the URLs of one host (the site, or the OAuth identity service)."""

    def __init__(self, url: str, settings: CreatioSettings) -> None:
        self.proxy = proxy_for(url)
        self.timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.timeout)
        self.headers = {
            "User-Agent": "creatio-attach",
            # the encodings urllib3 can decode here (gzip, deflate; br/zstd when installed)
            "Accept-Encoding": make_headers(accept_encoding=True)["accept-encoding"],
        }
        options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": max(1, settings.concurrency) + 2,
            "retries": False,
            "timeout": self.timeout,
            **tls_options(settings),
        }
        self.pools = _manager(self.proxy, urlsplit(url).hostname or url, options)

    def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Payload = None,
        *,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> Reply:
        """One request, no redirect followed; a stream leaves the body to be read.
        ``read_timeout`` replaces the configured one for this call (the logout's)."""
        what = where(method, url)
        timeout = self.timeout
        if read_timeout is not None:
            timeout = urllib3.Timeout(connect=self.timeout.connect_timeout, read=read_timeout)
        try:
            raw = self.pools.urlopen(
                method,
                url,
                body=body,
                headers={**self.headers, **headers, **body_headers(body)},
                redirect=False,
                timeout=timeout,
                preload_content=not stream,
            )
        except HTTPError as exc:
            raise error_from_exception(exc, what) from None
        except LocalReadError as exc:
            raise exc.error from exc.__cause__
        return Reply(raw, what, preloaded=not stream)

    def close(self) -> None:
        self.pools.clear()


def _manager(proxy: str | None, host: str, options: dict[str, Any]) -> urllib3.PoolManager:
    """A ``PoolManager``, or for a proxy a ``ProxyManager`` (``SOCKSProxyManager`` for
    ``socks*://`` with PySocks installed); a proxy that cannot be used is a config error."""
    if proxy is None:
        return urllib3.PoolManager(**options)
    user, password = requests.utils.get_auth_from_url(proxy)
    try:
        if proxy.lower().startswith("socks"):
            from urllib3.contrib.socks import SOCKSProxyManager

            return SOCKSProxyManager(proxy, username=user, password=password, **options)
        auth = make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
        return urllib3.ProxyManager(proxy, proxy_headers=auth, **options)
    except (ImportError, LocationValueError, ProxySchemeUnknown) as exc:
        raise ConfigError(
            f"the proxy the environment names for {host} cannot be used ({type(exc).__name__})",
            hint="check HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (a SOCKS proxy needs PySocks)",
        ) from None
