"""The blocking client against a real worker."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List

import pytest

import tucano_auth_client as tac
from conftest import (
    AMQP_URL,
    DEMO_SUBSCRIPTIONS,
    Worker,
    by_number,
    close_connection_named,
    connection_names,
)
from helpers import check_reply, mixed_requests

CALLS = 1000


def test_one_call_and_the_batch_queue(worker: Worker) -> None:
    with tac.Client(AMQP_URL, queue_prefix=worker.prefix) as client:
        reply = client.authenticate(by_number("S0000000329"), timeout=20)
        check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])
        reply = client.authenticate(by_number("S0000000330"), timeout=20, batch=True)
        check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000330"])
        refused = client.authenticate({"token": "x"}, timeout=20)
        assert (refused.code, refused.ok) == ("MISSING_IDENTIFIER", False)
        # Over the worker's 64 KiB: its refusal, over the same connection as the rest.
        huge = client.authenticate({**by_number("S0000000329"), "token": "x" * 70_000})
        assert huge.code == "INVALID_REQUEST", huge
        assert client.in_flight == 0
    with pytest.raises(tac.TucanoConnectionError, match="closed"):
        client.authenticate(by_number("S0000000329"))


def test_a_prefix_no_worker_ever_declared_is_a_connection_error_at_once(worker: Worker) -> None:
    with tac.Client(AMQP_URL, queue_prefix=f"{worker.prefix}-none") as client:
        began = time.monotonic()
        with pytest.raises(tac.TucanoConnectionError, match="does not exist"):
            client.authenticate(by_number("S0000000329"), timeout=20)
        assert time.monotonic() - began < 5
        # A returned request does not cost the client its channel: the next call gets
        # the same answer, not "connection lost".
        with pytest.raises(tac.TucanoConnectionError, match="does not exist"):
            client.authenticate(by_number("S0000000329"), timeout=20)
        assert client.in_flight == 0


def test_a_request_that_is_not_an_object_is_refused_before_sending(worker: Worker) -> None:
    with tac.Client(AMQP_URL, queue_prefix=worker.prefix) as client:
        with pytest.raises(TypeError):
            client.authenticate(["not", "an", "object"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.authenticate({"token": object()})
        with pytest.raises(ValueError):
            client.authenticate({"token": float("nan")})
        assert client.in_flight == 0


def test_a_thousand_concurrent_calls_on_one_connection_each_get_their_own_reply(
    worker: Worker,
) -> None:
    requests = mixed_requests(CALLS)
    start = threading.Barrier(CALLS, timeout=120)
    with tac.Client(AMQP_URL, queue_prefix=worker.prefix) as client:

        def call(i: int) -> Any:
            start.wait()
            return client.authenticate(requests[i][0], timeout=60)

        peak = 0
        finished = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not finished.wait(0.001):
                peak = max(peak, client.in_flight)

        watcher = threading.Thread(target=watch)
        watcher.start()
        began = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=CALLS) as pool:
                replies = list(pool.map(call, range(CALLS)))
        finally:
            finished.set()
            watcher.join()
        took = time.monotonic() - began
        assert client.in_flight == 0
    assert len(replies) == CALLS
    for reply, (_request, expected) in zip(replies, requests):
        check_reply(reply, expected)
    # They did wait at the same time, not one after the other.
    assert peak >= 100, peak
    print(f"{CALLS} calls from {CALLS} threads on one connection: {took:.2f} s, {peak} waiting at once")


def test_a_call_whose_reply_never_comes_times_out_and_leaves_nothing_pending(
    own_worker: Worker,
) -> None:
    with tac.Client(AMQP_URL, queue_prefix=own_worker.prefix) as client:
        check_reply(client.authenticate(by_number("S0000000329"), timeout=20), DEMO_SUBSCRIPTIONS["S0000000329"])
        own_worker.stop()
        began = time.monotonic()
        with pytest.raises(tac.TucanoTimeout):
            client.authenticate(by_number("S0000000329"), timeout=2.0)
        took = time.monotonic() - began
        assert 1.9 <= took <= 3.0, took
        assert client.in_flight == 0
        print(f"timeout 2 s: raised after {took:.3f} s")


def test_the_broker_closing_the_connection_fails_every_pending_call_at_once(
    worker: Worker, silent_prefix: str
) -> None:
    waiting = 50
    client = tac.Client(AMQP_URL, queue_prefix=silent_prefix)
    outcomes: List[Any] = []
    failed_at: List[float] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            client.authenticate(by_number("S0000000329"), timeout=60)
            outcome: Any = "a reply"
        except Exception as err:
            outcome = err
        with lock:
            outcomes.append(outcome)
            failed_at.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(waiting)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while client.in_flight < waiting:
        assert time.monotonic() < deadline, f"only {client.in_flight} calls waiting"
        time.sleep(0.05)

    closed_at = time.monotonic()
    close_connection_named(client.connection_name)
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a call still waits after the connection was closed"
    assert len(outcomes) == waiting
    assert all(isinstance(o, tac.TucanoConnectionError) for o in outcomes), outcomes
    assert client.in_flight == 0
    spread = max(failed_at) - min(failed_at)
    assert max(failed_at) - closed_at < 15, "rabbitmqctl and the failure took over 15 s"
    assert spread < 1.0, f"the calls failed {spread:.3f} s apart, not at once"
    print(f"{waiting} waiting calls failed within {spread * 1000:.1f} ms of each other")
    # The lost client stays lost: a call fails at once.
    began = time.monotonic()
    with pytest.raises(tac.TucanoConnectionError, match="connection lost"):
        client.authenticate(by_number("S0000000329"), timeout=20)
    assert time.monotonic() - began < 1.0
    client.close()
    # A new client works.
    with tac.Client(AMQP_URL, queue_prefix=worker.prefix) as fresh:
        check_reply(fresh.authenticate(by_number("S0000000329"), timeout=20), DEMO_SUBSCRIPTIONS["S0000000329"])


def test_closing_the_client_fails_waiting_calls(silent_prefix: str) -> None:
    client = tac.Client(AMQP_URL, queue_prefix=silent_prefix)
    outcome: List[BaseException] = []

    def call() -> None:
        try:
            client.authenticate(by_number("S0000000329"), timeout=60)
        except tac.TucanoError as err:
            outcome.append(err)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 30
    while client.in_flight < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], tac.TucanoConnectionError), outcome
    assert "closed" in str(outcome[0])
    client.close()  # twice is harmless


def test_a_fault_inside_the_io_thread_fails_the_calls_instead_of_leaving_them_hanging(
    worker: Worker,
) -> None:
    client = tac.Client(AMQP_URL, queue_prefix=worker.prefix)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("injected fault")

    client._channel.basic_publish = broken  # called on the I/O thread
    try:
        for _ in range(2):
            began = time.monotonic()
            with pytest.raises(tac.TucanoConnectionError, match="injected fault"):
                client.authenticate(by_number("S0000000329"), timeout=20)
            assert time.monotonic() - began < 5
        assert client.in_flight == 0
        # ... and closes its connection rather than leave it to the heartbeat.
        deadline = time.monotonic() + 20
        while client.connection_name in connection_names():
            assert time.monotonic() < deadline, "the connection is still open"
            time.sleep(0.2)
    finally:
        client.close()
