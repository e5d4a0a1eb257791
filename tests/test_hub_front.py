"""Serving the embedded hub (issue 10, item 1): the TLS front in the daemon (hub/front.py), the
hub CA (hub/tls.py) and the embedded server's loopback path (hub/embedded.py).

The end-to-end tests run one real `shoal run` daemon with `hub.serve.listen` on 127.0.0.1 and
a free port, make a device login with `shoal hub add-device` against its config, and connect
through the port with psycopg (libpq) or raw sockets."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import struct
import threading
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from shoal.hub import embedded, front, tls
from tests.daemons import DaemonDevice, shoal, wait_for
from tests.fixtures.hubs import parse_add_device_output
from tests.pgserver import free_port

# -- pure: packets ---------------------------------------------------------------------------


def _startup(body: bytes, code: int = 196608, length: int | None = None) -> bytes:
    return struct.pack("!II", 8 + len(body) if length is None else length, code) + body


@pytest.mark.parametrize("packet, expected", [
    (_startup(b"user\0dev\0database\0shoal\0\0"), ((3, 0), {"user": "dev", "database": "shoal"})),
    (_startup(b"user\0dev\0\0"), ((3, 0), {"user": "dev", "database": "dev"})),  # database defaults to user
    (_startup(b"user\0d\0application_name\0x y\0\0", code=196610),
     ((3, 2), {"user": "d", "application_name": "x y", "database": "d"})),
    (front.build_startup({"user": "é", "database": "shoal", "options": "-c a=b"}),
     ((3, 0), {"user": "é", "database": "shoal", "options": "-c a=b"})),
    (_startup(b"user\0dev\0database\0shoal"), "not terminated"),
    (_startup(b"user\0dev\0database\0shoal\0"), "not terminated"),
    (_startup(b"user\0dev\0database\0\0\0"), ((3, 0), {"user": "dev", "database": "dev"})),
    (_startup(b"user\0dev\0database\0\0"), "without a value"),
    (_startup(b"database\0shoal\0\0"), "no user"),
    (_startup(b"user\0\0\0"), "no user"),
    (_startup(b"user\0a\0user\0b\0\0"), "repeated"),
    (_startup(b"user\0\xff\0\0"), "not UTF-8"),
    (_startup(b"user\0dev\0\0", code=(2 << 16)), "unsupported protocol"),
    (_startup(b"user\0dev\0\0", length=99), "length field"),
    (b"\0\0\0\x08", "shorter than 8"),
    (_startup(b"user\0" + b"x" * 10100 + b"\0\0"), "too long"),
])
def test_parse_startup(packet, expected):
    if isinstance(expected, str):
        with pytest.raises(front.ProtocolError, match=expected):
            front.parse_startup(packet)
    else:
        assert front.parse_startup(packet) == expected


@pytest.mark.parametrize("message, code, shown", [
    ("the hub accepts TLS only", "08P01", "the hub accepts TLS only"),
    ('role "x" may not', "28000", 'role "x" may not'),
    ("nul\0inside", "28000", "nulinside"),
    ("long " * 200, "28000", ("long " * 200)[:500]),
])
def test_error_response_round_trip(message, code, shown):
    packet = front.error_response(message, code)
    assert packet[:1] == b"E" and struct.unpack("!I", packet[1:5])[0] == len(packet) - 1
    assert front.parse_error_response(packet) == {"S": "FATAL", "V": "FATAL", "C": code, "M": shown}


@pytest.mark.parametrize("code", [front.SSL_REQUEST, front.GSSENC_REQUEST, front.CA_REQUEST])
def test_fixed_requests(code):
    assert front.request_code(front.fixed_request(code)) == code
    assert len(front.fixed_request(code)) == 8


# -- pure-ish: the CA and the loopback rules --------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_hub_ca_is_made_once_kept_private_and_valid(tmp_path):
    from cryptography import x509

    paths = tls.ensure_hub_tls(tmp_path, ("192.0.2.7", "laptop.lan"))
    first = tls.ca_fingerprint(tls.load_ca_pem(tmp_path))
    assert _mode(paths.dir) == 0o700
    assert _mode(paths.ca_key) == 0o600 and _mode(paths.server_key) == 0o600
    assert tls.key_file_problems(tmp_path) == []
    server_before = paths.server_cert.read_bytes()
    again = tls.ensure_hub_tls(tmp_path)
    assert tls.ca_fingerprint(tls.load_ca_pem(tmp_path)) == first  # reused, not made again
    assert again.server_cert.read_bytes() == server_before
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "laptop.lan" in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} >= {"192.0.2.7", "127.0.0.1", "::1"}
    der = ca.public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                     fromlist=["Encoding"]).Encoding.DER)
    assert tls.ca_fingerprint(der) == first and len(first) == 64
    # libpq's OpenSSL takes the chain (what sslmode=verify-ca does)
    ctx = ssl.create_default_context(cafile=str(paths.ca_cert))
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_loose_key_modes_are_reported_and_tightened(tmp_path):
    paths = tls.ensure_hub_tls(tmp_path)
    os.chmod(paths.server_key, 0o644)
    os.chmod(paths.dir, 0o755)
    problems = tls.key_file_problems(tmp_path)
    assert len(problems) == 2 and any("0644" in p for p in problems) and any("0755" in p for p in problems)
    tls.ensure_hub_tls(tmp_path)
    assert _mode(paths.server_key) == 0o600 and _mode(paths.dir) == 0o700
    assert tls.key_file_problems(tmp_path) == []


def test_loopback_rules_admit_only_device_logins_by_scram():
    rules = [line.split() for line in embedded.hba_text(loopback=True).splitlines()
             if line.strip() and not line.startswith("#")]
    host = [r for r in rules if r[0] != "local"]
    assert host == [["host", "shoal", "+shoal_device", "127.0.0.1/32", "scram-sha-256"]]
    assert not any("trust" in r for r in rules)
    assert all(r[0] == "local" for r in rules if "postgres" in r)
    assert all(r[0] == "local" for r in (line.split() for line in embedded.hba_text().splitlines()
                                          if line.strip() and not line.startswith("#")))


def test_init_refuses_a_bad_serve_address(tmp_path):
    config = tmp_path / "config.yaml"
    proc = shoal(config, "init", "--serve", "nowhere", "--folder", f"docs={tmp_path / 'docs'}")
    assert proc.returncode != 0 and "hub.serve.listen: must be HOST:PORT" in proc.stderr
    assert not config.exists()


# -- end to end: a real daemon serving its embedded hub ---------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("front")
    port = free_port()
    device = DaemonDevice(base, "a", "embedded", owner=True)
    config = device.config_dict()
    config["hub"]["serve"] = {"listen": f"127.0.0.1:{port}"}
    device.write_config(yaml.safe_dump(config))
    device.start()
    try:
        wait_for(lambda: device.status().get("hub", {}).get("serve", {}).get("serving"),
                 timeout=30, what="the daemon to serve the hub")
        proc = shoal(device.config, "hub", "add-device", "x", timeout=60)
        assert proc.returncode == 0, proc.stderr
        url, password = parse_add_device_output(proc.stdout)
        role = conninfo_to_dict(url)["user"]
        state = device.state
        yield SimpleNamespace(device=device, port=port, role=role, password=password, state=state,
                              ca=state / "hub-tls" / "ca.pem", base=base)
    finally:
        device.stop()


def _conninfo(s, **kw) -> dict:
    base = dict(host="127.0.0.1", port=s.port, dbname="shoal", user=s.role, password=s.password,
                sslmode="verify-ca", sslrootcert=str(s.ca), connect_timeout=10, gssencmode="disable")
    base.update(kw)
    return base


def _refused(s, **kw) -> str:
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(**_conninfo(s, **kw)).close()
    return str(e.value)



def _owner(state: Path) -> str:
    """The owner's conninfo of the daemon's running hub: its Unix socket, peer authentication
    (this test process runs as the hub's OS user). Not start_embedded_hub: this process must
    not hold the server."""
    lines = (state / "hub" / "postmaster.pid").read_text().splitlines()
    return psycopg.conninfo.make_conninfo(host=lines[4].strip(), port=lines[3].strip(), user="postgres",
                                          dbname="shoal")


def test_device_login_connects_over_tls(served):
    with psycopg.connect(**_conninfo(served)) as conn:
        assert conn.pgconn.ssl_in_use
        hub_id = conn.execute("SELECT shoal.hub_id()").fetchone()[0]
        assert hub_id
        # a big answer and a big question go through the pipe whole
        assert conn.execute("SELECT length(repeat('x', 20000000))").fetchone()[0] == 20_000_000
        assert len(conn.execute("SELECT repeat('y', 20000000)").fetchone()[0]) == 20_000_000
        assert conn.execute("SELECT length(%s::text)", ("z" * 5_000_000,)).fetchone()[0] == 5_000_000
    status = served.device.status()
    assert status["hub"]["serve"] == {"listen": f"127.0.0.1:{served.port}", "serving": True, "error": None}
    text = shoal(served.device.config, "status").stdout
    assert f"serving 127.0.0.1:{served.port} (TLS): yes" in text


def test_many_connections_at_once(served):
    results, errors = [], []

    def one():
        try:
            with psycopg.connect(**_conninfo(served)) as conn:
                results.append(conn.execute("SELECT shoal.hub_id()").fetchone()[0])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]  # a device login has CONNECTION LIMIT 5
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(results)) == 1 and len(results) == 4


def test_connection_without_tls_is_refused(served):
    assert "TLS only" in _refused(served, sslmode="disable")


def test_plain_startup_packet_gets_an_error_response_and_nothing_else(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(front.build_startup({"user": served.role, "database": "shoal"}))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    fields = front.parse_error_response(data)  # one whole ErrorResponse, then EOF
    assert fields["S"] == "FATAL" and "TLS only" in fields["M"]


def test_cancel_request_without_tls_is_refused(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(struct.pack("!IIII", 16, front.CANCEL_REQUEST, 1234, 5678))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert "TLS only" in front.parse_error_response(data)["M"]


@pytest.mark.parametrize("sslmode", ["require", "verify-ca"])
def test_owner_cannot_log_in_through_the_port(served, sslmode):
    assert "may not log in over the network" in _refused(served, user="postgres", password="", sslmode=sslmode)


def test_owner_with_a_password_is_refused_by_the_front_and_by_the_server(served):
    """Belt and braces: even with a password set, the owner is refused by the front, and the
    server itself refuses it on the loopback path the front uses."""
    owner = _owner(served.state)
    secret = "owner-pw-" + os.urandom(6).hex()
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE postgres PASSWORD '{secret}'")
    try:
        assert "may not log in over the network" in _refused(served, user="postgres", password=secret)
        host, port = embedded.loopback_address(served.state)
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
            psycopg.connect(host=host, port=port, user="postgres", password=secret, dbname="shoal",
                            connect_timeout=10).close()
        # and the device login still gets in there only with its password
        with psycopg.connect(host=host, port=port, user=served.role, password=served.password, dbname="shoal",
                             connect_timeout=10) as conn:
            assert conn.execute("SELECT shoal.hub_id()").fetchone()[0]
    finally:
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute("ALTER ROLE postgres PASSWORD NULL")


def test_role_that_is_not_a_device_login_is_refused(served):
    owner = _owner(served.state)
    name, secret = "notadevice_" + os.urandom(4).hex(), "pw-" + os.urandom(8).hex()
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{secret}'")
    try:
        assert "may not log in over the network" in _refused(served, user=name, password=secret)
    finally:
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {name}")


def test_other_databases_are_refused(served):
    assert 'only database "shoal"' in _refused(served, dbname="postgres")
    assert 'only database "shoal"' in _refused(served, dbname="template1")


def test_client_trusting_another_ca_is_refused(served, tmp_path):
    other = tls.ensure_hub_tls(tmp_path / "other")
    message = _refused(served, sslrootcert=str(other.ca_cert))
    assert "certificate verify failed" in message


def test_wrong_password_is_refused(served):
    assert "password authentication failed" in _refused(served, password="not-the-password")


def test_direct_tls(served):
    if psycopg.pq.version() >= 170000:
        with psycopg.connect(**_conninfo(served, sslnegotiation="direct")) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT shoal.hub_id()").fetchone()[0]
    # and by hand: a ClientHello first, with ALPN postgresql, then a StartupMessage
    ctx = ssl.create_default_context(cafile=str(served.ca))
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["postgresql"])
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as sock:
            assert sock.selected_alpn_protocol() == "postgresql"
            sock.sendall(front.build_startup({"user": served.role, "database": "shoal"}))
            head = sock.recv(5)
            assert head[:1] == b"R"  # the server asks for the password (AuthenticationSASL)


def test_direct_tls_without_alpn_is_dropped(served):
    ctx = ssl.create_default_context(cafile=str(served.ca))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as sock:
                sock.sendall(front.build_startup({"user": served.role, "database": "shoal"}))
                assert sock.recv(5) == b""
        except (ssl.SSLError, ConnectionError):
            pass  # closed during or right after the handshake: also nothing


def test_gssenc_request_is_declined_then_tls_works(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        raw.sendall(front.fixed_request(front.GSSENC_REQUEST))
        assert raw.recv(1) == b"N"
        raw.sendall(front.fixed_request(front.SSL_REQUEST))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context(cafile=str(served.ca))
        ctx.check_hostname = False
        with ctx.wrap_socket(raw) as sock:
            sock.sendall(front.build_startup({"user": served.role, "database": "shoal"}))
            assert sock.recv(5)[:1] == b"R"


def test_ca_request_returns_the_stored_ca(served):
    pem = front.fetch_ca_pem("127.0.0.1", served.port, timeout=10)
    assert tls.ca_fingerprint(pem) == tls.ca_fingerprint(tls.load_ca_pem(served.state))
    assert pem == served.ca.read_text()


def test_tls_files_are_private_and_doctor_shows_the_fingerprint(served):
    d = served.state / "hub-tls"
    assert _mode(d) == 0o700
    assert _mode(d / "ca-key.pem") == 0o600 and _mode(d / "server-key.pem") == 0o600
    fingerprint = tls.ca_fingerprint(tls.load_ca_pem(served.state))
    out = shoal(served.device.config, "doctor").stdout
    line = next(x for x in out.splitlines() if "hub TLS" in x)
    assert line.startswith("ok") and fingerprint in line, out


def test_init_serve_writes_the_listen_address(tmp_path):
    """`shoal init --serve` writes hub.serve.listen; status shows it, not served without a daemon."""
    config = tmp_path / "config.yaml"
    listen = f"127.0.0.1:{free_port()}"
    proc = shoal(config, "init", "--serve", listen, "--folder", f"docs={tmp_path / 'docs'}")
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(config.read_text())
    assert data["hub"] == {"url": "embedded", "serve": {"listen": listen}}
    assert f"serving {listen} (TLS): no (daemon not running)" in shoal(config, "status").stdout
