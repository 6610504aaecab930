"""The cloud tier over TCP (loopback only): a server that continues OFFLOADs, and the bridge's client.

Same frames as the serial link. The server runs every slice above the device's with LiteRT
and always answers (tier 2); the client waits at most the request's ``deadline_left_us``.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time

from contracts.protocol import Error, ErrorCode, Offload, Ping, Pong, Result, Tier
from host.bundle import Bundle
from host.link import Link, SocketStream, connect_tcp
from host.tier import TierRunner

log = logging.getLogger("host.cloud")


class CloudServer(socketserver.ThreadingTCPServer):
    """One thread and one set of interpreters per connected bridge."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bundle: Bundle, address: tuple[str, int]) -> None:
        self.bundle = bundle
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Connection)

    def close(self) -> None:
        """Stop serving and end every connection (call ``shutdown`` first when ``serve_forever`` runs elsewhere)."""
        self.stopping.set()
        self.server_close()
        for sock in list(self.connections):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer


class _Connection(socketserver.BaseRequestHandler):
    server: CloudServer

    def handle(self) -> None:
        bundle = self.server.bundle
        runner = TierRunner(bundle, bundle.device_slices + 1, len(bundle.slices), Tier.CLOUD)
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        link = Link(SocketStream(self.request), peer)
        log.info("%s connected", peer)
        self.server.connections.add(self.request)
        try:
            while not self.server.stopping.is_set():
                for frame in link.receive():
                    message, rid = frame.message, frame.request_id
                    if isinstance(message, Offload):
                        reason = runner.check(message)
                        reply = Error(ErrorCode.MALFORMED, reason) if reason else runner.run(message).answer
                        link.send(reply, rid)
                    elif isinstance(message, Ping):
                        link.send(Pong(message.timestamp_us), rid)
                    else:
                        log.warning("%s: ignoring %s", peer, message.TYPE.name)
        except OSError as err:
            log.info("%s disconnected (%s)", peer, err)
        finally:
            self.server.connections.discard(self.request)


class CloudClient:
    """The bridge's connection to the cloud tier, reconnected on demand."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.link: Link | None = None
        self._next_id = 0

    def offload(self, message: Offload) -> Result | None:
        """The cloud's answer, or None when it is unreachable or misses the deadline."""
        end = time.monotonic() + message.deadline_left_us / 1e6
        self._next_id = (self._next_id + 1) & 0xFFFF
        try:
            if self.link is None:
                self.link = connect_tcp(*self.address, timeout=max(end - time.monotonic(), 0.01))
            self.link.send(message, self._next_id)
            while time.monotonic() < end:
                for frame in self.link.receive():
                    if frame.request_id != self._next_id:
                        continue
                    if isinstance(frame.message, Result):
                        return frame.message
                    log.warning("cloud refused request: %s", frame.message)
                    return None
        except OSError as err:
            log.warning("cloud %s:%d unreachable (%s); the edge answers from its own exits", *self.address, err)
            if self.link is not None:
                self.link.close()
            self.link = None
            return None
        log.warning("cloud missed the deadline of %d us", message.deadline_left_us)
        return None
