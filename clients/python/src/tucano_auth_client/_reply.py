"""The worker's reply envelope, checked against the published reply schema and typed.

The schema is a copy of the repository's ``schemas/reply.schema.json``, shipped inside
the package (a test keeps the two equal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from ._errors import TucanoBadReply


def _load_validator() -> Draft202012Validator:
    text = resources.files(__package__).joinpath("reply.schema.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


_VALIDATOR = _load_validator()


@dataclass(frozen=True)
class Reply:
    """A reply of the worker.

    ``code`` is the status code (``"OK"``, ``"NOT_FOUND"``, ... see the protocol
    documentation); ``subscription_id`` (32 upper-case hex digits) and ``jwt`` (the
    signed token for Tucano) are set on ``OK`` only; ``message`` says what exactly was
    wrong otherwise, ``description`` is the code's fixed sentence. The JWT is a
    credential: it is left out of ``repr``.
    """

    code: str
    subscription_id: Optional[str]
    jwt: Optional[str] = field(repr=False)
    message: str
    description: str = ""

    @property
    def ok(self) -> bool:
        """Whether the code is ``OK``."""
        return self.code == "OK"


def parse_reply(body: bytes) -> Reply:
    """Reads a reply body; raises :class:`TucanoBadReply` naming what is wrong (the
    place in the document and the rule broken, never a value, which may be a JWT)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise TucanoBadReply("the reply is not UTF-8") from None
    try:
        envelope: Any = json.loads(text)
    except ValueError:
        raise TucanoBadReply("the reply is not JSON") from None
    error = best_match(_VALIDATOR.iter_errors(envelope))
    if error is not None:
        raise TucanoBadReply(
            f"the reply does not match the reply schema at {error.json_path}"
            f" (rule {error.validator!s})"
        )
    data = envelope["data"]
    status = envelope["status"]
    return Reply(
        code=status["code"],
        subscription_id=data["subscription_id"] if data is not None else None,
        jwt=data["jwt"] if data is not None else None,
        message=status["message"],
        description=status["description"],
    )
