"""The blocking client, on pika: any number of threads calling one :class:`Client`.

pika is not thread-safe, so one I/O thread owns the connection and its one channel and
runs pika's event loop (``SelectConnection``): it consumes the direct reply-to
pseudo-queue, publishes every request (``mandatory``, with publisher confirms that are
tracked by delivery tag rather than waited for, so one slow confirm never holds up the
other calls), and hands each reply to the call waiting for its ``correlation_id``. A
calling thread only registers its call in the table of waiting calls, asks the I/O
thread to publish through ``add_callback_threadsafe`` (the one thread-safe method of
pika's event loop) and waits on its own event with its own timeout. When the
connection is lost, the I/O thread fails every waiting call at once.
"""

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import pika
import pika.spec

from ._common import (
    DIRECT_REPLY_TO,
    CorrelationIds,
    connection_error,
    connection_name,
    describe,
    encode_request,
    is_tls,
    nodes_in_order,
    queue_name,
    tls_for,
    trace_headers,
)
from ._errors import TucanoConnectionError, TucanoTimeout
from ._reply import Reply, parse_reply

#: How long one node may take to accept a connection and open the channel: pika's own
#: bound (``stack_timeout``, 15 s by default) plus a margin.
NODE_TIMEOUT = 20.0


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
        # Shared between the calling threads and the I/O thread, under the lock.
        self._lock = threading.Lock()
        self._pending: Dict[str, _Call] = {}
        self._closed: Optional[str] = None
        self._stopping = False
        # The I/O thread's own.
        self._connection: Any = None
        self._channel: Any = None
        self._open = False
        self._open_error: Optional[BaseException] = None
        self._unconfirmed: Dict[int, str] = {}  # delivery tag -> correlation_id
        self._published = 0
        # How the start ended: connected, or every node failed.
        self._ready = threading.Event()
        self._failure: Optional[TucanoConnectionError] = None

        nodes = nodes_in_order(url)
        context = tls_for(nodes, ca_file, client_cert, client_key)
        self._thread = threading.Thread(
            target=self._run, args=(nodes, context), name="tucano-auth-client I/O", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(NODE_TIMEOUT * len(nodes) + 5.0):
            self.close()
            raise TucanoConnectionError("no node of the broker URL answered in time")
        if self._failure is not None:
            raise self._failure

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
                self._connection.ioloop.add_callback_threadsafe(
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
        if self._thread.is_alive():
            try:
                self._connection.ioloop.add_callback_threadsafe(self._close_connection)
            except Exception:
                pass  # the event loop has already stopped
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

    def _run(self, nodes: List[str], context: Optional[ssl.SSLContext]) -> None:
        """Tries the nodes in turn; serves the first that opens until its connection
        ends; records why every node failed if none did."""
        failures: List[Tuple[str, BaseException]] = []
        for node in nodes:
            if self._stopping:
                break
            try:
                parameters = pika.URLParameters(node)
                parameters.client_properties = {"connection_name": self._name}
                parameters.connection_attempts = 1
                if is_tls(node):
                    parameters.ssl_options = pika.SSLOptions(context, parameters.host)
                self._open_error = None
                self._connection = pika.SelectConnection(
                    parameters,
                    on_open_callback=self._on_open,
                    on_open_error_callback=self._on_open_error,
                    on_close_callback=self._on_closed,
                )
                try:
                    self._connection.ioloop.start()  # until the connection ends
                except Exception as err:
                    if not self._open:
                        raise
                    # A fault inside pika's loop once serving: no reply can come now.
                    self._fail_all(f"connection lost: {describe(err)}")
                    self._close_after_fault()
                finally:
                    self._connection.ioloop.close()
            except Exception as err:  # a URL pika cannot read, a socket error
                self._open_error = err
            if self._open:
                return  # served, then lost or closed: every call has been failed
            failures.append((node, self._open_error or TucanoConnectionError("closed")))
        self._failure = connection_error(failures)
        self._fail_all(str(self._failure))
        self._ready.set()

    def _close_after_fault(self) -> None:
        """Closes the connection properly, so the broker does not keep it until the
        heartbeat times out."""
        try:
            if self._connection.is_open:
                self._connection.close()
                self._connection.ioloop.start()  # until _on_closed stops it
        except Exception:
            pass  # the socket is gone already

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        # Direct reply-to requires the consumer to exist, on the channel that
        # publishes, before the first request names it.
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm,
            callback=lambda _frame: channel.basic_consume(
                DIRECT_REPLY_TO, self._on_reply, auto_ack=True, callback=self._on_consuming
            ),
        )

    def _on_consuming(self, _frame: Any) -> None:
        self._open = True
        self._ready.set()

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        self._open_error = error
        connection.ioloop.stop()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        # The client has one channel: without it, the connection is of no use.
        if not self._open:
            self._open_error = reason
        if self._connection.is_open:
            self._connection.close()

    def _on_closed(self, connection: Any, reason: BaseException) -> None:
        if self._open:
            with self._lock:
                stopping = self._stopping
            self._fail_all(
                "the client was closed" if stopping else f"connection lost: {describe(reason)}"
            )
        elif self._open_error is None:
            self._open_error = reason
        connection.ioloop.stop()

    def _close_connection(self) -> None:
        if self._connection.is_open:
            self._connection.close()
        elif not self._connection.is_closing:
            self._connection.ioloop.stop()

    def _publish(
        self, correlation_id: str, queue: str, body: bytes, headers: Dict[str, str]
    ) -> None:
        with self._lock:
            if correlation_id not in self._pending:
                return  # the caller gave up (timeout) before its turn came
        if self._channel is None or not self._channel.is_open:
            self._fail(correlation_id, "connection lost: the channel is closed")
            return
        self._channel.basic_publish(
            "",
            queue,
            body,
            properties=pika.BasicProperties(
                content_type="application/json",
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
                delivery_mode=2,
                headers=headers or None,
            ),
            mandatory=True,
        )
        # The broker numbers the messages published on a channel in confirm mode 1, 2, ...
        self._published += 1
        self._unconfirmed[self._published] = correlation_id

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = int(method.delivery_tag)
        if method.multiple:
            # Tags were added in increasing order, so the confirmed ones come first.
            confirmed = []
            for pending_tag in self._unconfirmed:
                if pending_tag > tag:
                    break
                confirmed.append(pending_tag)
        else:
            confirmed = [tag]
        for pending_tag in confirmed:
            correlation_id = self._unconfirmed.pop(pending_tag, None)
            if correlation_id is not None and isinstance(method, pika.spec.Basic.Nack):
                self._fail(correlation_id, "the broker refused the request")

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        # A returned request (it precedes its confirm): no queue had it.
        if isinstance(properties.correlation_id, str):
            self._fail(
                properties.correlation_id,
                f"queue {method.routing_key} does not exist:"
                " is a worker running with this queue prefix?",
            )

    def _on_reply(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
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
            closed = self._closed
            waiting = list(self._pending.values())
            self._pending.clear()
        for call in waiting:
            call.error = TucanoConnectionError(closed)
            call.done.set()
