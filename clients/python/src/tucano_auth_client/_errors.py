"""The errors a call can raise: no reply came, or what came is not a reply.

A status other than ``OK`` is not an error: it is a :class:`~tucano_auth_client.Reply`
whose ``code`` says why. No error text ever holds a password, a request body or a JWT.
"""


class TucanoError(Exception):
    """Base of every error of this package."""


class TucanoTimeout(TucanoError):
    """No reply within the call's timeout.

    The request may still be answered later (it waits in its durable queue until a
    worker takes it); that late reply is dropped.
    """


class TucanoConnectionError(TucanoError):
    """The broker could not be reached, the connection was lost while the call waited,
    the client was closed, or the broker would not take the request (no queue under
    this prefix, or a negative confirm).

    A client whose connection is lost stays unusable: every later call raises this at
    once. Create a new client.
    """


class TucanoBadReply(TucanoError):
    """A message came back for this call that is not a reply of the worker (not JSON,
    or not the envelope of the published reply schema)."""
