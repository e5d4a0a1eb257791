"""The network between device and hub: connections cut or stalled mid-transfer by a proxy,
and TLS with sslmode=verify-full against a hub whose certificate a test CA signed. A push whose
reply is lost is replayed with encrypted folders too (sealing is deterministic: the same bytes)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time

import psycopg
import pytest

from tests.devices import Device, assert_converged
from tests.fixtures.devices import both_ways, passphrase_for
from tests.rogue import folder_sealer
from tests.fixtures.hubs import TestHub
from tests.pgserver import TcpPostgres
from shoal.errors import HubUnreachable
from shoal.hub.client import connect
from tests.tcpproxy import Proxy, TlsTerminatingProxy

pytestmark = pytest.mark.slow


@pytest.fixture
def tcp_hub(tmp_path):
    """A dedicated server (TcpPostgres) whose database `hub` is made a hub by `shoal hub init`;
    `tcp_hub.hub` makes the devices' logins, `tcp_hub.admin_dsn("hub")` is its owner."""
    pg = TcpPostgres(tmp_path / "srv")
    pg.hub = TestHub(pg.test_server(), "hub", tmp_path / "logins").create()
    pg.hub.init()
    yield pg
    pg.cleanup()


def _count_changes(pg, path, sealer=None):
    """Rows of `path` in the hub's changelog (found by its sealed path when `sealer` is given)."""
    with psycopg.connect(pg.admin_dsn("hub")) as conn:
        return conn.execute("SELECT count(*) FROM shoal.changes WHERE path=%s",
                            (sealer.seal_path(path) if sealer else path,)).fetchone()[0]


def test_connection_cut_mid_download_resumes_and_converges(tmp_path, tcp_hub):
    proxy = Proxy(("127.0.0.1", tcp_hub.port))
    try:
        a = Device(tmp_path, "alpha", tcp_hub.hub)
        b = Device(tmp_path, "beta", tcp_hub.hub, port=proxy.port)
        big = os.urandom(40 * 1024 * 1024)
        a.write("big.bin", big)
        a.write("small.txt", "small")
        a.sync()
        proxy.cut_after = 20 * 1024 * 1024  # the network goes away halfway through the download
        with pytest.raises(HubUnreachable):
            b.sync()
        assert not (b.root / "big.bin").exists()
        partial = list((b.root / ".shoal" / "tmp").glob("*.part"))
        assert partial and partial[0].stat().st_size > 0
        proxy.heal()
        before = proxy.down_bytes
        b.sync()
        assert b.read("big.bin") == big
        assert proxy.down_bytes - before < len(big)  # resumed: the blocks already there were not fetched again
        a.sync()
        assert_converged([a, b])
    finally:
        proxy.close()


@both_ways
def test_reply_lost_after_the_hub_committed_a_push_is_replayed_once(tmp_path, tcp_hub, encryption):
    proxy = Proxy(("127.0.0.1", tcp_hub.port))
    try:
        a = Device(tmp_path, "alpha", tcp_hub.hub, port=proxy.port, passphrase=passphrase_for(encryption))
        b = Device(tmp_path, "beta", tcp_hub.hub, passphrase=passphrase_for(encryption))
        for i in range(300):
            a.write(f"many/f{i:03}.txt", f"file {i}")
        # The hub commits the push, then the network drops its reply: the device cannot know.
        proxy.cut_on = b"accepted"
        with pytest.raises(HubUnreachable):
            a.sync()
        assert proxy.cuts == 1
        # 300 files and their directory: not marked pushed without the hub's answer
        assert a.store.pending_count("docs") == 301
        with psycopg.connect(tcp_hub.admin_dsn("hub")) as conn:
            assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 301
        b.sync()  # meanwhile beta gets the files and edits one: the head moves past alpha's push
        b.write("many/f007.txt", "edited on beta")
        b.sync()
        proxy.heal()
        a.sync()  # the same rows again: a replay, a no-op at the hub, not a conflict with beta's edit
        b.sync()
        heads = assert_converged([a, b])
        assert a.read("many/f007.txt") == b"edited on beta"
        assert not [p for p in heads if ".sync-conflict-" in p] and not a.store.conflicts()
        with psycopg.connect(tcp_hub.admin_dsn("hub")) as conn:
            assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 302
            sealed = conn.execute("SELECT DISTINCT sealed IS NOT NULL FROM shoal.changes").fetchall()
        assert sealed == [(encryption == "sealed",)]
        sealer = folder_sealer(b) if encryption == "sealed" else None
        assert all(_count_changes(tcp_hub, f"many/f{i:03}.txt", sealer) == 1 for i in range(0, 300, 37) if i != 7)
    finally:
        proxy.close()


def test_stalled_hub_times_out_and_sync_recovers(tmp_path, tcp_hub):
    proxy = Proxy(("127.0.0.1", tcp_hub.port))
    try:
        a = Device(tmp_path, "alpha", tcp_hub.hub, port=proxy.port, call_timeout=2.0)
        a.write("x.txt", "x")
        a.sync()
        a.write("y.txt", "y")
        proxy.stalled.set()  # the hub (or the network) hangs: bytes are accepted, nothing comes back
        started = time.monotonic()
        with pytest.raises(HubUnreachable, match="within 2s|hub unreachable"):
            a.sync()
        assert time.monotonic() - started < 30
        assert a.store.pending_count("docs") == 1
        proxy.heal()
        a.sync()
        assert a.store.pending_count("docs") == 0
        assert _count_changes(tcp_hub, "y.txt") == 1
    finally:
        proxy.close()


def _make_ca_and_server_cert(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("shoal test CA")).issuer_name(name("shoal test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = (x509.CertificateBuilder().subject_name(name("other CA")).issuer_name(name("other CA"))
             .public_key(other_key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(other_key, hashes.SHA256()))
    other_path = tmp_path / "other-ca.pem"
    other_path.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    return cert.public_bytes(serialization.Encoding.PEM), pem_key(key), ca_path, other_path


def test_tls_verify_full(tmp_path, tcp_hub):
    cert, key, ca_path, other_ca = _make_ca_and_server_cert(tmp_path)
    (tmp_path / "server.crt").write_bytes(cert)
    (tmp_path / "server.key").write_bytes(key)
    proxy = TlsTerminatingProxy(("127.0.0.1", tcp_hub.port), str(tmp_path / "server.crt"),
                                str(tmp_path / "server.key"))
    try:
        tls = {"sslmode": "verify-full", "sslrootcert": str(ca_path)}
        a = Device(tmp_path, "alpha", tcp_hub.hub, host="localhost", port=proxy.port, url_params=tls)
        b = Device(tmp_path, "beta", tcp_hub.hub, host="localhost", port=proxy.port, url_params=tls)
        assert a.hub_url.startswith(f"postgresql://{a.login.role}@localhost:{proxy.port}/hub?")
        a.write("secret.txt", "over TLS")
        a.sync()
        b.sync()
        assert b.read("secret.txt") == b"over TLS"
        assert proxy.handshakes >= 2
        # a hub whose certificate the configured CA did not sign is refused
        bad = f"postgresql://postgres@localhost:{proxy.port}/hub?sslmode=verify-full&sslrootcert={other_ca}"
        with pytest.raises(HubUnreachable, match="certificate verify failed"):
            connect(bad)
        # and so is a host name the certificate does not carry (same address, other name)
        wrong = (f"host=not-the-hub.invalid hostaddr=127.0.0.1 port={proxy.port} user=postgres dbname=hub"
                 f" sslmode=verify-full sslrootcert={ca_path}")
        with pytest.raises(HubUnreachable, match="does not match host name"):
            connect(wrong, timeout=3)
    finally:
        proxy.close()
