"""What the tests share besides the fixtures: the requests of the concurrency test, and
a stand-in worker that answers one request with a body of the test's choosing."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Tuple

import pika

from conftest import DEMO_SUBSCRIPTIONS, broker, by_number

OK_BODY = json.dumps(
    {
        "data": {"subscription_id": "75E3E50139F24DC3A6C9AA0C026D0292", "jwt": "aa.bb.cc"},
        "status": {"code": "OK", "description": "", "message": ""},
    }
).encode()


def mixed_requests(count: int) -> List[Tuple[Dict[str, Any], str]]:
    """``count`` requests and what tells each one's reply apart: the demo subscription's
    id for the three that exist, or, for a number that exists nowhere, the number
    itself (the worker's ``NOT_FOUND`` message names it)."""
    numbers = list(DEMO_SUBSCRIPTIONS)
    requests = []
    for i in range(count):
        if i % 4 < 3:
            number = numbers[i % 4]
            requests.append((by_number(number), DEMO_SUBSCRIPTIONS[number]))
        else:
            requests.append((by_number(f"S-missing-{i}"), f"S-missing-{i}"))
    return requests


def check_reply(reply: Any, expected: str) -> None:
    if expected.startswith("S-missing-"):
        assert reply.code == "NOT_FOUND", reply
        assert reply.message.endswith(f" {expected} not found"), reply
        assert reply.subscription_id is None and reply.jwt is None and not reply.ok
    else:
        assert reply.code == "OK" and reply.ok, reply
        assert reply.subscription_id == expected, reply
        assert reply.jwt is not None and reply.jwt.count(".") == 2


def answer_once(queue: str, body: bytes, timeout: float = 20.0) -> Any:
    """Takes one request from ``queue`` and publishes ``body`` to its ``reply_to`` with
    its ``correlation_id``, as a worker would; returns the request's properties."""
    connection = broker()
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while True:
            method, properties, _request = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                break
            assert time.monotonic() < deadline, f"no request on {queue} within {timeout} s"
            time.sleep(0.05)
        channel.basic_publish(
            "",
            properties.reply_to,
            body,
            properties=pika.BasicProperties(
                correlation_id=properties.correlation_id, content_type="application/json"
            ),
        )
        return properties
    finally:
        connection.close()
