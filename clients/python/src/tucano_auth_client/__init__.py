"""A client of tucano-auth for Python backends: request-reply over RabbitMQ.

``Client`` (blocking, on pika) and ``AsyncClient`` (asyncio, on aio-pika) each hold one
broker connection over which any number of concurrent ``authenticate`` calls run,
matched to their replies by ``correlation_id``. See the package README for the details.
"""

from ._asyncio import AsyncClient
from ._blocking import Client
from ._errors import TucanoBadReply, TucanoConnectionError, TucanoError, TucanoTimeout
from ._reply import Reply

__all__ = [
    "AsyncClient",
    "Client",
    "Reply",
    "TucanoBadReply",
    "TucanoConnectionError",
    "TucanoError",
    "TucanoTimeout",
]
