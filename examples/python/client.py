"""Calling tucano-auth from Python: one request-reply with the tucano-auth-client package.

    pip install -r examples/python/requirements.txt ./clients/python
    python3 examples/python/client.py '{"token": "35108255345D4F98ABFD7810A08E432F",
        "subscription_identifier": {"number": "S0000000329"}}'

Environment: AMQP_URL (one URL, or a comma-separated list of cluster nodes) and
QUEUE_PREFIX, as the worker reads them. Prints the reply envelope; exit status 0 on OK,
1 on any other status code, 2 when no valid reply came in time. The package does the
rest: direct reply-to, correlation ids, the timeout, the reply's schema check.
"""

import json
import os
import sys

from tucano_auth_client import Client, TucanoError

DEMO_REQUEST = {
    "token": "35108255345D4F98ABFD7810A08E432F",
    "subscription_identifier": {"number": "S0000000329"},
}


def main():
    request = json.loads(sys.argv[1]) if len(sys.argv) > 1 else DEMO_REQUEST
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    prefix = os.environ.get("QUEUE_PREFIX", "tucano")
    try:
        with Client(url, queue_prefix=prefix) as client:
            reply = client.authenticate(request, timeout=10.0)
    except TucanoError as err:  # TucanoTimeout, TucanoConnectionError, TucanoBadReply
        print(f"error: {err}", file=sys.stderr)
        return 2
    data = {"subscription_id": reply.subscription_id, "jwt": reply.jwt} if reply.ok else None
    status = {"code": reply.code, "description": reply.description, "message": reply.message}
    print(json.dumps({"data": data, "status": status}))
    return 0 if reply.ok else 1


if __name__ == "__main__":
    sys.exit(main())
