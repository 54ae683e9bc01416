"""The blocking client, on pika: any number of threads calling one :class:`Client`.

pika is not thread-safe, so one I/O thread owns the connection and its one channel: it
consumes the direct reply-to pseudo-queue, publishes every request (with publisher
confirms, ``mandatory``), and hands each reply to the call waiting for its
``correlation_id``. A calling thread only registers its call in the table of waiting
calls, asks the I/O thread to publish through ``add_callback_threadsafe`` (the one
thread-safe method of a pika connection) and waits on its own event with its own
timeout. When the connection is lost, the I/O thread fails every waiting call at once.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import pika
import pika.exceptions

from ._common import (
    DIRECT_REPLY_TO,
    CorrelationIds,
    connection_error,
    connection_name,
    describe,
    encode_request,
    nodes_in_order,
    queue_name,
    is_tls,
    tls_for,
    trace_headers,
)
from ._errors import TucanoConnectionError, TucanoTimeout
from ._reply import Reply, parse_reply


class _Call:
    """One waiting call: the event its thread waits on, and what ended the wait."""

    __slots__ = ("done", "body", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body: Optional[bytes] = None
        self.error: Optional[TucanoConnectionError] = None


class Client:
    """A blocking client of the worker over one broker connection.

    ``url`` is one AMQP URL or a comma-separated list of the nodes of one RabbitMQ
    cluster, tried in turn from a random start until one answers. ``queue_prefix`` is
    the worker's ``QUEUE_PREFIX``. For ``amqps://`` nodes, ``ca_file`` names the PEM CA
    certificates the broker's certificate must chain to (the system's roots without
    it), and ``client_cert`` / ``client_key`` a client certificate and its key (the key
    may be inside the certificate file).

    Thread-safe: share one client between threads. Raises
    :class:`TucanoConnectionError` when no node answers. The client does not
    reconnect: once its connection is lost, create a new one.
    """

    def __init__(
        self,
        url: str,
        *,
        queue_prefix: str = "tucano",
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
    ) -> None:
        self._prefix = queue_prefix
        self._name = connection_name("blocking")
        self._ids = CorrelationIds()
        self._lock = threading.Lock()
        self._pending: Dict[str, _Call] = {}
        self._closed: Optional[str] = None
        self._stopping = False
        self._connection = _connect(url, self._name, ca_file, client_cert, client_key)
        try:
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
            # Direct reply-to requires the consumer to exist, on the channel that
            # publishes, before the first request names it.
            self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        except Exception as err:
            _close_quietly(self._connection)
            raise TucanoConnectionError(f"opening the channel: {describe(err)}") from None
        self._thread = threading.Thread(
            target=self._run, name="tucano-auth-client I/O", daemon=True
        )
        self._thread.start()

    @property
    def connection_name(self) -> str:
        """The name the broker shows for this client's connection."""
        return self._name

    @property
    def in_flight(self) -> int:
        """How many calls are waiting for their reply now."""
        with self._lock:
            return len(self._pending)

    def authenticate(
        self, request: Mapping[str, Any], timeout: float = 10.0, batch: bool = False
    ) -> Reply:
        """Sends ``request`` (a request body, see ``schemas/request.schema.json``) and
        waits at most ``timeout`` seconds for its reply; ``batch=True`` sends it to the
        batch queue. A status other than ``OK`` is a :class:`Reply`, not an error.

        Raises :class:`TucanoTimeout`, :class:`TucanoConnectionError` or
        :class:`TucanoBadReply`.
        """
        body = encode_request(request)
        headers = trace_headers()
        queue = queue_name(self._prefix, batch)
        correlation_id = self._ids.new()
        call = _Call()
        with self._lock:
            if self._closed is not None:
                raise TucanoConnectionError(self._closed)
            self._pending[correlation_id] = call
        try:
            try:
                self._connection.add_callback_threadsafe(
                    lambda: self._publish(correlation_id, queue, body, headers)
                )
            except Exception as err:
                raise TucanoConnectionError(f"connection lost: {describe(err)}") from None
            if not call.done.wait(timeout):
                raise TucanoTimeout(f"no reply within {timeout} s")
        finally:
            with self._lock:
                self._pending.pop(correlation_id, None)
        if call.error is not None:
            raise call.error
        assert call.body is not None  # the I/O thread sets one of the two
        return parse_reply(call.body)

    def close(self) -> None:
        """Closes the connection; calls still waiting raise
        :class:`TucanoConnectionError`. Closing twice does nothing."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            self._connection.add_callback_threadsafe(lambda: None)  # wakes the I/O thread
        except Exception:
            pass  # the I/O thread has already stopped
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)
        self._fail_all("the client was closed")

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    # The I/O thread: everything below runs on it only.

    def _run(self) -> None:
        reason = "the client was closed"
        try:
            while not self._stopping:
                self._connection.process_data_events(time_limit=None)
        except Exception as err:  # pika raises many kinds; all mean the connection is gone
            reason = f"connection lost: {describe(err)}"
        self._fail_all(reason)
        _close_quietly(self._connection)

    def _publish(
        self, correlation_id: str, queue: str, body: bytes, headers: Dict[str, str]
    ) -> None:
        with self._lock:
            call = self._pending.get(correlation_id)
        if call is None:
            return  # the caller gave up (timeout) before its turn came: nothing to send
        properties = pika.BasicProperties(
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            delivery_mode=2,
            headers=headers or None,
        )
        try:
            self._channel.basic_publish(
                "", queue, body, properties=properties, mandatory=True
            )
        except pika.exceptions.UnroutableError:
            self._fail(
                correlation_id,
                f"queue {queue} does not exist: is a worker running with this queue prefix?",
            )
        except pika.exceptions.NackError:
            self._fail(correlation_id, f"the broker refused the request to {queue}")

    def _on_reply(
        self,
        _channel: Any,
        _method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        correlation_id = properties.correlation_id
        if not isinstance(correlation_id, str):
            return
        with self._lock:
            # No waiter: the call timed out; its reply is late (or a duplicate).
            call = self._pending.pop(correlation_id, None)
        if call is not None:
            call.body = body
            call.done.set()

    def _fail(self, correlation_id: str, reason: str) -> None:
        with self._lock:
            call = self._pending.pop(correlation_id, None)
        if call is not None:
            call.error = TucanoConnectionError(reason)
            call.done.set()

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = reason
            waiting = list(self._pending.values())
            self._pending.clear()
        for call in waiting:
            call.error = TucanoConnectionError(self._closed)
            call.done.set()


def _connect(
    url: str,
    name: str,
    ca_file: Optional[str],
    client_cert: Optional[str],
    client_key: Optional[str],
) -> pika.BlockingConnection:
    """A connection to the first node that answers, from a random start."""
    nodes = nodes_in_order(url)
    context = tls_for(nodes, ca_file, client_cert, client_key)
    failures: List[Tuple[str, BaseException]] = []
    for node in nodes:
        try:
            parameters = pika.URLParameters(node)
            parameters.client_properties = {"connection_name": name}
            parameters.connection_attempts = 1
            if is_tls(node):
                parameters.ssl_options = pika.SSLOptions(context, parameters.host)
            return pika.BlockingConnection(parameters)
        except Exception as err:  # pika's connection errors have no common base
            failures.append((node, err))
    raise connection_error(failures)


def _close_quietly(connection: pika.BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:
        pass  # already closed, or the socket is gone: nothing left to release
