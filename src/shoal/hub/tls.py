"""The hub CA and the serving certificate of a served embedded hub (`hub.serve.listen`).

Made with `cryptography` on first need, kept in `<state_dir>/hub-tls/` (0700): the CA
(EC P-256, ~10 years, CA:true, keyCertSign) signs the serving certificate (P-256, ~2 years,
renewed when it nears its end). Devices pin the CA (`sslmode=verify-ca`), so the serving
certificate's names do not matter; they are there for clients that check them anyway.
Private keys are written 0600, atomically (temp file + rename), and reused on later starts.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import ShoalError

TLS_DIR = "hub-tls"
CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
SERVER_CERT, SERVER_KEY = "server.pem", "server-key.pem"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE_DAYS = 30


class HubTlsError(ShoalError):
    exit_code = 1


@dataclass(frozen=True)
class HubTls:
    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def tls_paths(state_dir: Path) -> HubTls:
    """Where a state dir's hub TLS files are (whether or not they exist). Raises nothing."""
    d = Path(state_dir) / TLS_DIR
    return HubTls(d, d / CA_CERT, d / CA_KEY, d / SERVER_CERT, d / SERVER_KEY)


def ca_fingerprint(pem_or_der: str | bytes) -> str:
    """SHA-256 of the certificate's DER encoding, 64 lowercase hex digits. Takes PEM (str or
    bytes) or DER. Raises ValueError when it is not a certificate."""
    from cryptography import x509

    data = pem_or_der.encode("ascii") if isinstance(pem_or_der, str) else bytes(pem_or_der)
    if b"-----BEGIN CERTIFICATE-----" in data:
        data = x509.load_pem_x509_certificate(data).public_bytes(_der())
    else:
        x509.load_der_x509_certificate(data)  # validates
    return hashlib.sha256(data).hexdigest()


def load_ca_pem(state_dir: Path) -> str:
    """The hub CA certificate (PEM) of a state dir. Raises HubTlsError when there is none."""
    path = tls_paths(state_dir).ca_cert
    try:
        return path.read_text(encoding="ascii")
    except OSError as e:
        raise HubTlsError(f"no hub CA at {path} ({e.strerror}): it is made when the daemon "
                          "first serves the hub (hub.serve.listen)") from e


def ensure_hub_tls(state_dir: Path, hosts: tuple[str, ...] = ()) -> HubTls:
    """Make (or reuse) the hub CA and the serving certificate; returns their paths.
    `hosts`: names or addresses to put in the serving certificate besides localhost,
    127.0.0.1, ::1 and this machine's host name. Raises HubTlsError."""
    paths = tls_paths(state_dir)
    try:
        _private_dir(paths.dir)
        lock = os.open(paths.dir / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes at once make one CA
            ca_key, ca_cert = _ensure_ca(paths)
            _ensure_server(paths, ca_key, ca_cert, hosts)
        finally:
            os.close(lock)
    except OSError as e:
        raise HubTlsError(f"cannot make the hub's TLS files in {paths.dir}: {e}") from e
    return paths


def key_file_problems(state_dir: Path) -> list[str]:
    """What is wrong with the permissions of the hub TLS dir and its private keys (empty:
    nothing, or no files yet). Raises nothing."""
    paths = tls_paths(state_dir)
    problems = []
    for path, want in ((paths.dir, 0o700), (paths.ca_key, 0o600), (paths.server_key, 0o600)):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            continue
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{path} is a symlink")
        elif st.st_uid != os.geteuid():
            problems.append(f"{path} is owned by uid {st.st_uid}, not by this user")
        elif stat.S_IMODE(st.st_mode) & ~want & 0o777:
            problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, should be {want:04o}")
    return problems


# -- internals ---------------------------------------------------------------------------------


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise HubTlsError(f"refusing {path}: not a directory owned by this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read_key(path: Path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        raise HubTlsError(f"refusing {path}: a symlink or not owned by this user")
    if stat.S_IMODE(st.st_mode) != 0o600:
        os.chmod(path, 0o600)
    return load_pem_private_key(path.read_bytes(), password=None)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _ensure_ca(paths: HubTls):
    from cryptography import x509

    if paths.ca_key.exists() and paths.ca_cert.exists():
        key = _read_key(paths.ca_key)
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise HubTlsError(f"{paths.ca_cert} does not belong to {paths.ca_key}: move both away to make "
                              "a new hub CA (every device must then join again)")
        return key, cert
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"shoal hub CA {socket.gethostname()}"[:64])])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write_atomic(paths.ca_key, _key_pem(key), 0o600)  # the key first: a cert alone is useless
    _write_atomic(paths.ca_cert, _cert_pem(cert), 0o644)
    try:
        os.unlink(paths.server_cert)  # signed by an older CA, if any
    except FileNotFoundError:
        pass
    return key, cert


def _san_names(hosts: tuple[str, ...]):
    from cryptography import x509

    names: list = []
    seen: set[str] = set()
    for host in (*hosts, "localhost", "127.0.0.1", "::1", socket.gethostname()):
        host = (host or "").strip("[]")
        if not host or host in seen or host in ("0.0.0.0", "::"):
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            try:
                names.append(x509.DNSName(host.encode("idna").decode("ascii")))
            except (UnicodeError, ValueError):
                continue
    return names


def _server_ok(paths: HubTls, ca_cert) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        key = _read_key(paths.server_key)
    except (OSError, ValueError):
        return False
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        return False
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError
        return False
    return _not_after(cert) - _now() > dt.timedelta(days=RENEW_BEFORE_DAYS)


def _not_after(cert) -> dt.datetime:
    if hasattr(cert, "not_valid_after_utc"):  # cryptography >= 42
        return cert.not_valid_after_utc
    return cert.not_valid_after.replace(tzinfo=dt.timezone.utc)


def _ensure_server(paths: HubTls, ca_key, ca_cert, hosts: tuple[str, ...]) -> None:
    if _server_ok(paths, ca_cert):
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal hub")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), _not_after(ca_cert)))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_san_names(hosts)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_atomic(paths.server_key, _key_pem(key), 0o600)
    _write_atomic(paths.server_cert, _cert_pem(cert), 0o644)
