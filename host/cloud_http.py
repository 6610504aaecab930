"""The bridge's client of the Ray Serve cloud tier (``host/cloud_ray.py``): one OFFLOAD frame per HTTP POST.

Standard library only, so the bridge needs no Ray. Like the TCP client it waits at most the
OFFLOAD's ``deadline_left_us`` and returns None when the cloud is unreachable, late or refuses,
so the edge answers from its own exits.
"""

from __future__ import annotations

import http.client
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from contracts.protocol import Offload, ProtocolError, Result, decode, encode
from host.cloud import CloudClient
from host.cloud_ray import FRAME_TYPE, HASH_HEADER
from host.ports import PortError, is_loopback, loopback

log = logging.getLogger("host.cloud")


def read_token(path: str | None) -> str | None:
    """The shared token in ``path`` (first line), or None without a path."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise PortError(f"token file {path}: {err.strerror}; write a shared secret into it") from err
    if len(token) < 16:
        raise PortError(
            f"token file {path}: the token is {len(token)} characters; use at least 16 (`openssl rand -hex 16`)"
        )
    return token


def require_token(host: str, token: str | None, what: str) -> None:
    """Refuse a non-loopback ``host`` without a token."""
    if token is None and not is_loopback(host):
        raise PortError(f"{what} {host}: a non-loopback address needs a shared token: pass --token-file FILE")


class HttpCloudClient:
    """POSTs each OFFLOAD to ``url`` over one kept-alive connection, reopened after a failure."""

    def __init__(self, url: str, model_hash: str, token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise PortError(f"--cloud {url!r}: expected http://HOST:PORT/offload")
        require_token(parts.hostname, token, "--cloud")
        self.url, self.host, self.port = url, parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.headers = {"Content-Type": FRAME_TYPE, HASH_HEADER: model_hash}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.conn: http.client.HTTPConnection | None = None
        self._next_id = 0

    def offload(self, message: Offload) -> Result | None:
        """The cloud's answer, or None when it is unreachable, refuses or misses the deadline."""
        timeout = message.deadline_left_us / 1e6
        end = time.monotonic() + timeout
        self._next_id = (self._next_id + 1) & 0xFFFF
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port)
            self.conn.timeout = max(timeout, 0.001)  # (re)connecting: the server may close a kept-alive connection
            if self.conn.sock is not None:
                self.conn.sock.settimeout(self.conn.timeout)
            self.conn.request("POST", self.path, encode(message, self._next_id), self.headers)
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as err:
            late = time.monotonic() >= end
            why = f"missed the deadline of {message.deadline_left_us} us" if late else f"unreachable ({err})"
            log.warning("cloud %s %s; the edge answers from its own exits", self.url, why)
            self.close()
            return None
        if response.status != 200:
            log.warning("cloud %s refused the offload (HTTP %d): %s", self.url, response.status, body[:300].decode())
            return None
        try:
            frame = decode(body.rstrip(b"\x00"))
        except ProtocolError as err:
            log.warning("cloud %s answered a damaged frame (%s)", self.url, err)
            return None
        if isinstance(frame.message, Result) and frame.request_id == self._next_id:
            return frame.message
        log.warning("cloud refused request: %s", frame.message)
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def connect(url: str, model_hash: str, token: str | None = None) -> CloudClient | HttpCloudClient:
    """The client for ``--cloud``: ``HOST:PORT`` or ``tcp://HOST:PORT`` (loopback only), or an ``http://`` URL."""
    if url.startswith("http://"):
        return HttpCloudClient(url, model_hash, token)
    if url.startswith("ray://"):
        raise PortError(
            f"--cloud {url}: the bridge reaches a Ray cloud through Serve's HTTP proxy; pass the URL that "
            "`python -m host cloud --engine ray` prints (http://HOST:PORT/offload)"
        )
    return CloudClient(*loopback(url.removeprefix("tcp://")))
