"""A test CA made with the ``openssl`` command, and a TLS-terminating proxy in front of
the real RabbitMQ, so the clients' ``amqps://`` is tested against a real handshake."""

from __future__ import annotations

import pathlib
import socket
import ssl
import subprocess
import threading
from typing import List, Optional

BROKER = ("127.0.0.1", 5672)


class Pki:
    """A CA, a server certificate for ``localhost`` / ``127.0.0.1`` and a client
    certificate, all PEM files in ``folder``."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.ca = folder / "ca.pem"
        self.ca_key = folder / "ca.key"
        self.server_cert = folder / "server.pem"
        self.server_key = folder / "server.key"
        self.client_cert = folder / "client.pem"
        self.client_key = folder / "client.key"
        self._openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=tucano-auth test CA",
            "-keyout", self.ca_key, "-out", self.ca,
        )  # fmt: skip
        self._issue("localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", self.server_cert, self.server_key)
        self._issue("tucano client", "extendedKeyUsage=clientAuth", self.client_cert, self.client_key)

    def _issue(self, name: str, extension: str, cert: pathlib.Path, key: pathlib.Path) -> None:
        request = self.folder / f"{key.stem}.csr"
        extensions = self.folder / f"{key.stem}.ext"
        extensions.write_text(extension + "\n")
        self._openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", key, "-out", request,
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", request, "-CA", self.ca, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", extensions, "-out", cert,
        )  # fmt: skip

    @staticmethod
    def _openssl(*args: object) -> None:
        subprocess.run(
            ["openssl", *map(str, args)], check=True, capture_output=True, timeout=60
        )


class TlsProxy:
    """Accepts TLS on a free port of 127.0.0.1 and relays the clear stream to the broker;
    asks for a client certificate from the CA if ``client_auth``."""

    def __init__(self, pki: Pki, client_auth: bool) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if client_auth:
            self.context.load_verify_locations(pki.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self.failed_handshakes = 0
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inbound, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(inbound,), daemon=True).start()

    def _serve(self, inbound: socket.socket) -> None:
        tls: Optional[ssl.SSLSocket] = None
        try:
            tls = self.context.wrap_socket(inbound, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.failed_handshakes += 1
            inbound.close()
            return
        with self._lock:
            self.handshakes += 1
        outbound = socket.create_connection(BROKER)
        with self._lock:
            self._sockets += [tls, outbound]
        threading.Thread(target=_pipe, args=(tls, outbound), daemon=True).start()
        _pipe(outbound, tls)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
