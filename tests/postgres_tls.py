"""A throwaway PostgreSQL cluster that requires TLS, for tests of `sslmode` with both drivers.

    with TLSPostgres.start(tmp_dir) as server:
        server.url("asyncpg", sslmode="verify-full", sslrootcert=server.ca_file)

- its own certificate authority signs the server's certificate (CN and SAN 127.0.0.1 and
  localhost); a second authority, `wrong_ca_file`, signed nothing;
- pg_hba.conf has only `hostssl` lines with scram-sha-256: a plain connection is refused, a
  wrong password fails as it would on a hosted database;
- it listens on 127.0.0.1 and 127.0.0.2 (a loopback address the certificate does not name);
- PostgreSQL refuses to run as root: when the tests run as root, the cluster runs as the
  `postgres` system user (runuser), in a directory that user owns.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.processes import free_port

PASSWORD = "s3cret-Passw0rd"
ROLE = "megapolis"
DATABASE = "megapolis_tls"


def find_initdb() -> Path | None:
    """The newest server's initdb (Debian keeps them in /usr/lib/postgresql/<major>/bin)."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        found = shutil.which("initdb")
        return Path(found) if found else None
    return Path(max(candidates, key=lambda path: int(Path(path).parts[-3])))


@dataclass
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue_server_certificate(self) -> tuple[bytes, bytes]:
        """PEM certificate and key for 127.0.0.1 / localhost."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def write(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path


@dataclass
class TLSPostgres:
    directory: Path
    port: int
    ca_file: Path
    wrong_ca_file: Path
    as_postgres: bool

    def url(
        self,
        driver: str,
        *,
        host: str = "127.0.0.1",
        password: str = PASSWORD,
        database: str = DATABASE,
        **query: str | Path,
    ) -> str:
        suffix = f"?{urlencode({k: str(v) for k, v in query.items()})}" if query else ""
        return f"postgresql+{driver}://{ROLE}:{password}@{host}:{self.port}/{database}{suffix}"

    def superuser_conninfo(self) -> str:
        """Over the cluster's own Unix socket (trust), for setup and checks."""
        return f"host={self.directory} port={self.port} user=postgres dbname=postgres"

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def start(cls, initdb: Path) -> Iterator[TLSPostgres]:
        as_postgres = os.geteuid() == 0
        directory = Path(tempfile.mkdtemp(prefix="megapolis-tls-pg-"))
        try:
            server = cls._create(initdb, directory, as_postgres)
            server._pg_ctl("start", "-w", "-t", "60", "-l", str(directory / "server.log"))
            try:
                server._create_role_and_database()
                yield server
            finally:
                server._pg_ctl("stop", "-m", "immediate", "-w")
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    @classmethod
    def _create(cls, initdb: Path, directory: Path, as_postgres: bool) -> TLSPostgres:
        authority = CertificateAuthority.create("Megapolis test CA")
        ca_file = authority.write(directory / "ca.pem")
        wrong_ca_file = CertificateAuthority.create("Someone else's CA").write(
            directory / "wrong-ca.pem"
        )
        data = directory / "data"
        server = cls(directory, free_port(), ca_file, wrong_ca_file, as_postgres)
        if as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(directory, user.pw_uid, user.pw_gid)
        directory.chmod(0o755)
        server._run(str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        certificate, key = authority.issue_server_certificate()
        (data / "server.crt").write_bytes(certificate)
        (data / "server.key").write_bytes(key)
        (data / "server.key").chmod(0o600)
        if as_postgres:
            for name in ("server.crt", "server.key"):
                os.chown(data / name, user.pw_uid, user.pw_gid)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {server.port}\n"
                "listen_addresses = '127.0.0.1,127.0.0.2'\n"
                f"unix_socket_directories = '{directory}'\n"
                "ssl = on\n"
                "ssl_cert_file = 'server.crt'\n"
                "ssl_key_file = 'server.key'\n"
                "password_encryption = 'scram-sha-256'\n"
                "max_connections = 40\n"
                "shared_buffers = 16MB\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
            )
        (data / "pg_hba.conf").write_text(
            "local   all  postgres                 trust\n"
            "hostssl all  all       127.0.0.0/8     scram-sha-256\n"
        )
        return server

    def _create_role_and_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(PASSWORD)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(ROLE)
                )
            )

    def drop_tables(self) -> None:
        import psycopg

        with psycopg.connect(
            self.superuser_conninfo().replace("dbname=postgres", f"dbname={DATABASE}"),
            autocommit=True,
        ) as conn:
            conn.execute(f"DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION {ROLE}")

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl = Path(find_initdb() or "pg_ctl").with_name("pg_ctl")
        self._run(str(pg_ctl), "-D", str(self.directory / "data"), *args)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}"
                f"{result.stderr}\n{self.log()}"
            )
