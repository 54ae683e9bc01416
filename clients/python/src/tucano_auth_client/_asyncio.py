"""The asyncio client, on aio-pika: any number of tasks calling one :class:`AsyncClient`.

One connection and one channel (publisher confirms, returns raised): the channel
consumes the direct reply-to pseudo-queue before anything is published, and each reply
completes the future waiting for its ``correlation_id``. When the connection or the
channel closes, every waiting future fails at once.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

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
    with_name,
)
from ._errors import TucanoConnectionError, TucanoTimeout
from ._reply import Reply, parse_reply

#: How long one node may take to accept a connection before the next is tried.
CONNECT_TIMEOUT = 15.0


class AsyncClient:
    """An asyncio client of the worker over one broker connection.

    Create it with ``await AsyncClient.connect(url, ...)``, whose arguments are those of
    the blocking :class:`~tucano_auth_client.Client`. Share it between tasks. The client
    does not reconnect: once its connection is lost, connect a new one.
    """

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aio_pika.abc.AbstractChannel,
        queue_prefix: str,
        name: str,
    ) -> None:
        """Internal: use :meth:`AsyncClient.connect`."""
        self._connection = connection
        self._channel = channel
        self._prefix = queue_prefix
        self._name = name
        self._ids = CorrelationIds()
        self._pending: Dict[str, asyncio.Future[bytes]] = {}
        self._closed: Optional[str] = None

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        queue_prefix: str = "tucano",
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
    ) -> AsyncClient:
        """Connects to the first node of ``url`` that answers, from a random start, and
        starts listening for replies. Raises :class:`TucanoConnectionError` when no
        node answers."""
        name = connection_name("asyncio")
        nodes = nodes_in_order(url)
        context = tls_for(nodes, ca_file, client_cert, client_key)
        failures: List[Tuple[str, BaseException]] = []
        connection: Optional[aio_pika.abc.AbstractConnection] = None
        for node in nodes:
            try:
                connection = await aio_pika.connect(
                    with_name(node, name),
                    ssl_context=context if is_tls(node) else None,
                    timeout=CONNECT_TIMEOUT,
                )
                break
            except Exception as err:  # aiormq's errors have no common base with OSError
                failures.append((node, err))
        if connection is None:
            raise connection_error(failures)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            client = cls(connection, channel, queue_prefix, name)
            # Direct reply-to requires the consumer to exist, on the channel that
            # publishes, before the first request names it. The pseudo-queue cannot be
            # declared, only looked up.
            replies = await channel.declare_queue(DIRECT_REPLY_TO, passive=True)
            await replies.consume(client._on_reply, no_ack=True)
        except Exception as err:
            await connection.close()
            raise TucanoConnectionError(f"opening the channel: {describe(err)}") from None
        connection.close_callbacks.add(client._on_close)
        channel.close_callbacks.add(client._on_close)
        return client

    @property
    def connection_name(self) -> str:
        """The name the broker shows for this client's connection."""
        return self._name

    @property
    def in_flight(self) -> int:
        """How many calls are waiting for their reply now."""
        return len(self._pending)

    async def authenticate(
        self, request: Mapping[str, Any], timeout: float = 10.0, batch: bool = False
    ) -> Reply:
        """Sends ``request`` and waits at most ``timeout`` seconds for its reply;
        ``batch=True`` sends it to the batch queue. A status other than ``OK`` is a
        :class:`Reply`, not an error.

        Raises :class:`TucanoTimeout`, :class:`TucanoConnectionError` or
        :class:`TucanoBadReply`.
        """
        body = encode_request(request)
        headers = trace_headers()
        queue = queue_name(self._prefix, batch)
        if self._closed is not None:
            raise TucanoConnectionError(self._closed)
        correlation_id = self._ids.new()
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = reply
        message = aio_pika.Message(
            body,
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=dict(headers) or None,
        )
        try:
            body = await asyncio.wait_for(self._send(queue, message, reply), timeout)
        except asyncio.TimeoutError:
            raise TucanoTimeout(f"no reply within {timeout} s") from None
        finally:
            # However the call ends (reply, timeout, error, cancellation).
            self._pending.pop(correlation_id, None)
        return parse_reply(body)

    async def _send(
        self, queue: str, message: aio_pika.Message, reply: asyncio.Future[bytes]
    ) -> bytes:
        try:
            await self._channel.default_exchange.publish(
                message, routing_key=queue, mandatory=True
            )
        except aio_pika.exceptions.PublishError:
            raise TucanoConnectionError(
                f"queue {queue} does not exist: is a worker running with this queue prefix?"
            ) from None
        except aio_pika.exceptions.DeliveryError:
            raise TucanoConnectionError(f"the broker refused the request to {queue}") from None
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if reply.done():  # the connection was lost: the reason is already there
                return await reply
            raise TucanoConnectionError(f"connection lost: {describe(err)}") from None
        # The future is shielded so that a timeout cancels the wait, not the future the
        # reply consumer or the close callback may be completing.
        return await asyncio.shield(reply)

    async def close(self) -> None:
        """Closes the connection; calls still waiting raise
        :class:`TucanoConnectionError`. Closing twice does nothing."""
        self._fail_all("the client was closed")
        if not self._connection.is_closed:
            try:
                await self._connection.close()
            except Exception:
                pass  # already going away: nothing left to release

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # A coroutine, as aio-pika wants of a consumer; it never waits on anything.
        correlation_id = message.correlation_id
        if correlation_id is None:
            return
        # No waiter: the call timed out; its reply is late (or a duplicate).
        reply = self._pending.pop(correlation_id, None)
        if reply is not None and not reply.done():
            reply.set_result(message.body)

    def _on_close(self, _sender: Any, exc: Optional[BaseException] = None) -> None:
        if exc is None:
            self._fail_all("the connection was closed")
        else:
            self._fail_all(f"connection lost: {describe(exc)}")

    def _fail_all(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        waiting = list(self._pending.values())
        self._pending.clear()
        for reply in waiting:
            if not reply.done():
                reply.set_exception(TucanoConnectionError(self._closed))
