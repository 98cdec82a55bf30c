"""Make a certificate authority and a server certificate for local TLS testing.

    python examples/generate_cert.py certs/ [--host localhost --host 127.0.0.1]

Writes three files into the directory, made with trustme:

- ``ca.pem``: the certificate of a throwaway certificate authority. Clients trust it:
  ``ssl.create_default_context(cafile="certs/ca.pem")``.
- ``server.pem``: the server certificate and its chain, valid for the hosts given
  (localhost, 127.0.0.1 and ::1 by default).
- ``server.key``: the server's private key.

Then ``python examples/tls.py --certfile certs/server.pem --keyfile certs/server.key
--cafile certs/ca.pem`` serves and connects with them. Never trust such a CA outside
tests: anyone who reads ``ca.pem``'s directory could copy it, and the files are not
protected by a password.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trustme


def generate(directory: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` into ``directory``.

    Returns:
        The paths of the CA certificate, the certificate chain and the key.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*hosts)
    ca_path = directory / "ca.pem"
    chain_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca.cert_pem.write_to_path(ca_path)
    chain_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_path.touch(mode=0o600)
    cert.private_key_pem.write_to_path(key_path)
    return ca_path, chain_path, key_path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, nargs="?", default=Path("certs"))
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="a host name or IP address the certificate is valid for (repeatable)",
    )
    args = parser.parse_args()
    hosts = args.hosts or ["localhost", "127.0.0.1", "::1"]
    for path in generate(args.directory, hosts):
        print(path)
