"""What both clients put on the wire and accept from it: the request's properties and
trace context, replies that are not the worker's, the node list, TLS, the shipped schema."""

from __future__ import annotations

import asyncio
import json
import pathlib
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, List, Tuple

import pytest

import tucano_auth_client as tac
import tucano_auth_client._common as tucano_common
from conftest import AMQP_URL, DEMO_SUBSCRIPTIONS, REPO, Worker, broker, by_number, delete_queues
from helpers import OK_BODY, answer_once, check_reply
from tls_proxy import Pki, TlsProxy

KINDS = ["blocking", "asyncio"]


def call_answered_by(
    kind: str, prefix: str, body: bytes, request: Any = None, **options: Any
) -> Tuple[Any, Any]:
    """One call with ``kind`` of client on ``prefix`` whose request a stand-in worker
    answers with ``body``: (the call's reply or exception, the request's properties)."""
    request = request or by_number("S0000000329")
    queue = f"{prefix}.authenticate"
    if kind == "blocking":
        with tac.Client(AMQP_URL, queue_prefix=prefix) as client, ThreadPoolExecutor(1) as pool:
            stand_in = pool.submit(answer_once, queue, body)
            try:
                outcome: Any = client.authenticate(request, timeout=20, **options)
            except tac.TucanoError as err:
                outcome = err
            return outcome, stand_in.result(timeout=30)

    async def scenario() -> Tuple[Any, Any]:
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=prefix) as client:
            stand_in = asyncio.get_running_loop().run_in_executor(None, answer_once, queue, body)
            try:
                outcome: Any = await client.authenticate(request, timeout=20, **options)
            except tac.TucanoError as err:
                outcome = err
            return outcome, await stand_in

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_requests_carry_the_properties_the_worker_reads(kind: str, silent_prefix: str) -> None:
    reply, properties = call_answered_by(kind, silent_prefix, OK_BODY)
    assert reply == tac.Reply("OK", DEMO_SUBSCRIPTIONS["S0000000329"], "aa.bb.cc", "", "")
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    # The broker rewrites the pseudo-queue's name into the address of this channel.
    assert properties.reply_to.startswith("amq.rabbitmq.reply-to.")
    assert properties.correlation_id
    assert not (properties.headers or {}).get("traceparent"), "no span, no trace context"
    assert "aa.bb.cc" not in repr(reply), "the JWT is left out of repr"


BAD_REPLIES = {
    "not JSON": b"<html>bad gateway</html>",
    "not UTF-8": b'{"data":null,"status":{"code":"NOT_FOUND\xff"}}',
    "OK without data": b'{"data":null,"status":{"code":"OK","description":"","message":""}}',
    "an unknown code": b'{"data":null,"status":{"code":"MAYBE","description":"d","message":"m"}}',
    "a JWT with a newline": json.dumps(
        {
            "data": {"subscription_id": DEMO_SUBSCRIPTIONS["S0000000329"], "jwt": "secret.jwt.value\n"},
            "status": {"code": "OK", "description": "", "message": ""},
        }
    ).encode(),
    "an extra field": json.dumps(
        {"data": None, "status": {"code": "NOT_FOUND", "description": "d", "message": "m"}, "x": 1}
    ).encode(),
    "a JSON array": b"[]",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("what", list(BAD_REPLIES))
def test_a_reply_that_is_not_the_workers_raises_bad_reply(
    kind: str, what: str, silent_prefix: str
) -> None:
    outcome, _ = call_answered_by(kind, silent_prefix, BAD_REPLIES[what])
    assert isinstance(outcome, tac.TucanoBadReply), (what, outcome)
    assert "secret.jwt.value" not in str(outcome), "a value of the reply is echoed"


@pytest.mark.parametrize("kind", KINDS)
def test_a_reply_after_the_timeout_is_dropped_and_the_client_goes_on(
    kind: str, silent_prefix: str
) -> None:
    queue = f"{silent_prefix}.authenticate"
    # Told apart from the next call's reply, so a client that matched replies by order
    # rather than by correlation_id would hand it to the next call.
    late = json.dumps(
        {"data": None, "status": {"code": "NOT_FOUND", "description": "d", "message": "late"}}
    ).encode()

    if kind == "blocking":
        with tac.Client(AMQP_URL, queue_prefix=silent_prefix) as client:
            with pytest.raises(tac.TucanoTimeout):
                client.authenticate(by_number("S0000000329"), timeout=0.5)
            answer_once(queue, late)  # the late reply, to the call that gave up
            with ThreadPoolExecutor(1) as pool:
                stand_in = pool.submit(answer_once, queue, OK_BODY)
                assert client.authenticate(by_number("S0000000330"), timeout=20).ok
                stand_in.result(timeout=30)
            assert client.in_flight == 0
        return

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=silent_prefix) as client:
            with pytest.raises(tac.TucanoTimeout):
                await client.authenticate(by_number("S0000000329"), timeout=0.5)
            await loop.run_in_executor(None, answer_once, queue, late)
            stand_in = loop.run_in_executor(None, answer_once, queue, OK_BODY)
            assert (await client.authenticate(by_number("S0000000330"), timeout=20)).ok
            await stand_in
            assert client.in_flight == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_the_broker_refuses_is_a_connection_error_and_the_client_goes_on(
    kind: str,
) -> None:
    # A queue that holds nothing and rejects what overflows: the broker nacks each request.
    prefix = f"tpy_{uuid.uuid4().hex[:12]}"
    connection = broker()
    try:
        connection.channel().queue_declare(
            f"{prefix}.authenticate",
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )
        with pytest.raises(tac.TucanoConnectionError, match="refused"):
            calls_on_one_client(kind, prefix, 2)
    finally:
        delete_queues(prefix)
        connection.close()


def test_the_shipped_reply_schema_is_the_repositorys() -> None:
    shipped = pathlib.Path(tac.__file__).with_name("reply.schema.json")
    assert shipped.read_bytes() == (REPO / "schemas" / "reply.schema.json").read_bytes()
    source = REPO / "clients" / "python" / "src" / "tucano_auth_client" / "reply.schema.json"
    assert source.read_bytes() == (REPO / "schemas" / "reply.schema.json").read_bytes()


@pytest.fixture
def tracer() -> Iterator[Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    yield provider.get_tracer("tucano-auth-client tests")
    provider.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_the_callers_trace_context_is_in_the_request_headers(
    kind: str, silent_prefix: str, tracer: Any
) -> None:
    with tracer.start_as_current_span("caller") as span:
        context = span.get_span_context()
        reply, properties = call_answered_by(kind, silent_prefix, OK_BODY)
    assert reply.ok
    headers = properties.headers or {}
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert headers.get("traceparent") == expected, headers


def test_without_opentelemetry_the_package_imports_and_works(worker: Worker) -> None:
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # what an environment without the otel extra has
import tucano_auth_client, tucano_auth_client._common as common
assert common._inject is None
with tucano_auth_client.Client({AMQP_URL!r}, queue_prefix={worker.prefix!r}) as client:
    reply = client.authenticate({by_number("S0000000329")!r}, timeout=20)
print(reply.code, reply.subscription_id)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OK", DEMO_SUBSCRIPTIONS["S0000000329"]]


def calls_on_one_client(kind: str, prefix: str, count: int) -> None:
    """``count`` calls in turn on one client, each expected to raise within 5 s; raises
    the last one's error."""
    errors: List[BaseException] = []

    def took(began: float) -> None:
        assert time.monotonic() - began < 5

    if kind == "blocking":
        with tac.Client(AMQP_URL, queue_prefix=prefix) as client:
            for _ in range(count):
                began = time.monotonic()
                try:
                    client.authenticate(by_number("S0000000329"), timeout=20)
                except tac.TucanoError as err:
                    errors.append(err)
                took(began)
    else:

        async def scenario() -> None:
            async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=prefix) as client:
                for _ in range(count):
                    began = time.monotonic()
                    try:
                        await client.authenticate(by_number("S0000000329"), timeout=20)
                    except tac.TucanoError as err:
                        errors.append(err)
                    took(began)

        asyncio.run(scenario())
    assert len(errors) == count, errors
    assert len({str(err) for err in errors}) == 1, errors  # the same refusal each time
    raise errors[-1]


def connect_and_call(kind: str, url: str, prefix: str, **options: Any) -> Any:
    """Connects ``kind`` of client to ``url`` and makes one call."""
    if kind == "blocking":
        with tac.Client(url, queue_prefix=prefix, **options) as client:
            return client.authenticate(by_number("S0000000329"), timeout=20)

    async def scenario() -> Any:
        async with await tac.AsyncClient.connect(url, queue_prefix=prefix, **options) as client:
            return await client.authenticate(by_number("S0000000329"), timeout=20)

    return asyncio.run(scenario())


REFUSING = "amqp://guest:s3cret@127.0.0.1:1/%2f"


@pytest.mark.parametrize("kind", KINDS)
def test_a_node_list_whose_first_node_refuses_connects_through_the_other(
    kind: str, worker: Worker
) -> None:
    # The start is random: ten clients all connect, whichever node they try first.
    for _ in range(10):
        reply = connect_and_call(kind, f"{REFUSING}, {AMQP_URL}", worker.prefix)
        check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_client_that_starts_at_the_refusing_node_moves_on_to_the_next(
    kind: str, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The random start made to pick the first node, the one that refuses.
    monkeypatch.setattr(random, "randrange", lambda _n: 0)
    assert tucano_common.nodes_in_order(f"{REFUSING}, {AMQP_URL}") == [REFUSING, AMQP_URL]
    reply = connect_and_call(kind, f"{REFUSING}, {AMQP_URL}", worker.prefix)
    check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])


def test_the_start_of_a_node_list_is_random() -> None:
    nodes = "amqp://a, amqp://b ,amqp://c,,"
    firsts = {tucano_common.nodes_in_order(nodes)[0] for _ in range(200)}
    assert firsts == {"amqp://a", "amqp://b", "amqp://c"}
    assert sorted(tucano_common.nodes_in_order(nodes)) == ["amqp://a", "amqp://b", "amqp://c"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_node_list_none_of_whose_nodes_answers_names_them_without_passwords(
    kind: str,
) -> None:
    with pytest.raises(tac.TucanoConnectionError) as raised:
        # A closed port, and the real broker refusing the password.
        connect_and_call(kind, f"{REFUSING},amqp://guest:s3cret@127.0.0.1:5672/%2f", "unused")
    text = str(raised.value)
    assert "127.0.0.1:1/" in text and "127.0.0.1:5672/" in text, text
    assert "111" in text and "ACCESS_REFUSED" in text, text  # ECONNREFUSED, the login
    assert "s3cret" not in text, text
    with pytest.raises(tac.TucanoConnectionError):
        connect_and_call(kind, " , ", "unused")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("kind", KINDS)
def test_amqps_with_a_ca_file_through_a_tls_proxy(kind: str, pki: Pki, worker: Worker) -> None:
    proxy = TlsProxy(pki, client_auth=False)
    try:
        url = f"amqps://guest:guest@localhost:{proxy.port}/%2f"
        reply = connect_and_call(kind, url, worker.prefix, ca_file=str(pki.ca))
        check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])
        assert proxy.handshakes == 1
        # Without the CA file the system's roots do not know the test CA: refused.
        with pytest.raises(tac.TucanoConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            connect_and_call(kind, url, worker.prefix)
        assert proxy.handshakes == 1
    finally:
        proxy.close()


@pytest.mark.parametrize("kind", KINDS)
def test_amqps_with_a_client_certificate(kind: str, pki: Pki, worker: Worker) -> None:
    proxy = TlsProxy(pki, client_auth=True)
    try:
        url = f"amqps://guest:guest@127.0.0.1:{proxy.port}/%2f"
        reply = connect_and_call(
            kind,
            url,
            worker.prefix,
            ca_file=str(pki.ca),
            client_cert=str(pki.client_cert),
            client_key=str(pki.client_key),
        )
        check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])
        assert proxy.handshakes == 1
        with pytest.raises(tac.TucanoConnectionError):
            connect_and_call(kind, url, worker.prefix, ca_file=str(pki.ca))
        assert proxy.handshakes == 1
    finally:
        proxy.close()


def test_tls_files_that_cannot_be_read_are_named(pki: Pki) -> None:
    url = "amqps://guest:guest@localhost:1/%2f"
    with pytest.raises(tac.TucanoConnectionError, match="no-such-ca.pem"):
        tac.Client(url, ca_file="/nonexistent/no-such-ca.pem")
    with pytest.raises(tac.TucanoConnectionError, match="client certificate /nonexistent/c.pem"):
        tac.Client(url, ca_file=str(pki.ca), client_cert="/nonexistent/c.pem")
    with pytest.raises(ValueError, match="client_cert"):
        tac.Client(url, ca_file=str(pki.ca), client_key=str(pki.client_key))
