"""Calling tucano-auth from Python: one request-reply over RabbitMQ direct reply-to.

    pip install -r examples/python/requirements.txt
    python3 examples/python/client.py '{"token": "35108255345D4F98ABFD7810A08E432F",
        "subscription_identifier": {"number": "S0000000329"}}'

Environment: AMQP_URL (one URL, or a comma-separated list of cluster nodes, tried in
turn) and QUEUE_PREFIX, as the worker reads them. The reply is checked against
schemas/reply.schema.json (JSON Schema draft 2020-12) before it is used. Exit status:
0 on OK, 1 on any other status code, 2 when no valid reply came in time.
"""

import json
import os
import pathlib
import sys
import time
import uuid

import pika
from jsonschema import Draft202012Validator

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "reply.schema.json"
DEMO_REQUEST = {
    "token": "35108255345D4F98ABFD7810A08E432F",
    "subscription_identifier": {"number": "S0000000329"},
}


class Timeout(Exception):
    """No reply within the timeout."""


def connect(amqp_url):
    """Connects to the first node of the comma-separated list that answers."""
    errors = []
    for node in [n.strip() for n in amqp_url.split(",") if n.strip()]:
        try:
            return pika.BlockingConnection(pika.URLParameters(node))
        except pika.exceptions.AMQPError as err:
            errors.append(repr(err))
    raise ConnectionError("no node of AMQP_URL answered: " + "; ".join(errors))


def authenticate(connection, queue, request, timeout):
    """Sends one request and returns the reply body (a dict); raises Timeout."""
    channel = connection.channel()
    channel.confirm_delivery()
    correlation_id = uuid.uuid4().hex
    replies = []

    def on_reply(_channel, _method, properties, body):
        # Direct reply-to delivers only replies to this channel; the id check guards
        # against a late reply to an earlier call that timed out.
        if properties.correlation_id == correlation_id:
            replies.append(body)

    # The consumer must exist before the request that names it as reply_to is sent.
    channel.basic_consume(DIRECT_REPLY_TO, on_reply, auto_ack=True)
    channel.basic_publish(
        exchange="",
        routing_key=queue,
        body=json.dumps(request).encode(),
        properties=pika.BasicProperties(
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            delivery_mode=2,
        ),
        mandatory=True,
    )
    deadline = time.monotonic() + timeout
    while not replies:
        left = deadline - time.monotonic()
        if left <= 0:
            channel.close()
            raise Timeout(f"no reply within {timeout} s")
        connection.process_data_events(time_limit=min(left, 0.5))
    channel.close()
    return json.loads(replies[0])


def main():
    request = json.loads(sys.argv[1]) if len(sys.argv) > 1 else DEMO_REQUEST
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    queue = os.environ.get("QUEUE_PREFIX", "tucano") + ".authenticate"
    validator = Draft202012Validator(json.loads(REPLY_SCHEMA.read_text()))
    try:
        connection = connect(amqp_url)
    except ConnectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        reply = authenticate(connection, queue, request, timeout=10.0)
    except (Timeout, pika.exceptions.UnroutableError) as err:
        print(f"error: {err!r}", file=sys.stderr)
        return 2
    finally:
        connection.close()
    problems = [e.message for e in validator.iter_errors(reply)]
    if problems:
        print(f"error: the reply does not match its schema: {problems}", file=sys.stderr)
        return 2
    print(json.dumps(reply))
    return 0 if reply["status"]["code"] == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
