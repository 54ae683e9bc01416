"""What the blocking and the asyncio clients share: the node list, TLS, the connection's
name, the request's body and queue, correlation ids, and trace-context injection.

The wire protocol is the repository's ``docs/protocol.md``: requests go to the default
exchange with routing key ``PREFIX.authenticate`` (or ``PREFIX.authenticate.batch``),
``content_type`` ``application/json``, persistent, ``mandatory``, with a
``correlation_id`` of their own and ``reply_to`` = RabbitMQ's direct reply-to.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import threading
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import TucanoConnectionError

#: RabbitMQ's direct reply-to pseudo-queue.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


_inject: Optional[Callable[[Dict[str, str]], None]]
try:  # OpenTelemetry is optional: the ``otel`` extra.
    from opentelemetry.propagate import inject as _otel_inject

    _inject = _otel_inject
except ImportError:
    _inject = None


def split_nodes(url: str) -> List[str]:
    """The nodes of a comma-separated ``AMQP_URL`` list, blanks dropped."""
    return [node.strip() for node in url.split(",") if node.strip()]


def nodes_in_order(url: str) -> List[str]:
    """The nodes of ``url``, starting at a random one so clients spread over a cluster."""
    nodes = split_nodes(url)
    if not nodes:
        raise TucanoConnectionError("the broker URL names no node")
    start = random.randrange(len(nodes))
    return nodes[start:] + nodes[:start]


def redact(node: str) -> str:
    """``node`` without its user and password, fit for an error message or a log."""
    try:
        parts = urlsplit(node)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unreadable URL>"


def connection_error(failures: List[Tuple[str, BaseException]]) -> TucanoConnectionError:
    """The error for a node list none of whose nodes answered."""
    described = "; ".join(f"{redact(node)}: {describe(err)}" for node, err in failures)
    return TucanoConnectionError(f"no node of the broker URL answered ({described})")


def describe(err: BaseException) -> str:
    """A short description of a connection failure, without the URL it came from."""
    name = type(err).__name__
    text = str(err)
    if not text or text == name:
        # Some of pika's errors say what happened only in their repr (the inner error).
        return repr(err)
    return f"{name}: {text}"


def is_tls(node: str) -> bool:
    """Whether ``node`` is an ``amqps://`` URL."""
    return node.strip().lower().startswith("amqps:")


def tls_for(
    nodes: List[str],
    ca_file: Optional[str],
    client_cert: Optional[str],
    client_key: Optional[str],
) -> Optional[ssl.SSLContext]:
    """The TLS settings for the ``amqps://`` nodes of ``nodes`` (``None`` when there is
    none): ``ca_file``'s CAs (the system's roots without it), the host name checked,
    and the client certificate if one is given. A file that cannot be read is a
    :class:`TucanoConnectionError` naming it; ``client_key`` without ``client_cert`` a
    ``ValueError``."""
    if client_key is not None and client_cert is None:
        raise ValueError("client_key needs client_cert")
    if not any(is_tls(node) for node in nodes):
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        raise TucanoConnectionError(f"cannot use the CA file {ca_file}: {describe(err)}") from None
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as err:
            files = client_cert if client_key is None else f"{client_cert} and {client_key}"
            raise TucanoConnectionError(
                f"cannot use the client certificate {files}: {describe(err)}"
            ) from None
    return context


def connection_name(kind: str) -> str:
    """The name the broker shows for a client's connection (``rabbitmqctl
    list_connections client_properties``, the management UI): the package, the kind of
    client, the host and process, and a random part that tells two clients apart."""
    return (
        f"tucano-auth-client python {kind} {socket.gethostname()} pid {os.getpid()}"
        f" {uuid.uuid4().hex[:8]}"
    )


def with_name(node: str, name: str) -> str:
    """``node`` with the connection name in its query (``name=``), where aiormq reads it
    on every aio-pika version (aio-pika 9 ignores ``client_properties`` given with a
    URL)."""
    parts = urlsplit(node)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = [(key, value) for key, value in pairs if key != "name"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("name", name)])))


def encode_request(request: Mapping[str, Any]) -> bytes:
    """The request as the JSON body the worker reads."""
    if not isinstance(request, Mapping):
        raise TypeError("request must be a dict (a JSON object)")
    # allow_nan=False: NaN and infinities are not JSON; refused here, not by the worker.
    text = json.dumps(request, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def trace_headers() -> Dict[str, str]:
    """The caller's W3C trace context (``traceparent``, ``tracestate``) as AMQP headers,
    when OpenTelemetry is installed and a span is active; else nothing."""
    if _inject is None:
        return {}
    carrier: Dict[str, str] = {}
    _inject(carrier)
    return {key: value for key, value in carrier.items() if isinstance(value, str)}


def queue_name(prefix: str, batch: bool) -> str:
    """The request queue: interactive, or the batch one served with spare capacity."""
    return f"{prefix}.authenticate.batch" if batch else f"{prefix}.authenticate"


class CorrelationIds:
    """Unique ``correlation_id`` values: this client's random part and a counter, so
    two clients never collide and one never repeats itself."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._next = 0

    def new(self) -> str:
        with self._lock:
            self._next += 1
            return f"{self._prefix}-{self._next}"
