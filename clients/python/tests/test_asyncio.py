"""The asyncio client against a real worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List

import pytest

import tucano_auth_client as tac
from conftest import (
    AMQP_URL,
    DEMO_SUBSCRIPTIONS,
    Worker,
    by_number,
    close_connection_named,
)
from helpers import check_reply, mixed_requests

CALLS = 1000


def test_one_call_and_the_batch_queue(worker: Worker) -> None:
    async def scenario() -> None:
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=worker.prefix) as client:
            reply = await client.authenticate(by_number("S0000000329"), timeout=20)
            check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])
            reply = await client.authenticate(by_number("S0000000330"), timeout=20, batch=True)
            check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000330"])
            refused = await client.authenticate({"token": "x"}, timeout=20)
            assert (refused.code, refused.ok) == ("MISSING_IDENTIFIER", False)
            huge = await client.authenticate({**by_number("S0000000329"), "token": "x" * 70_000})
            assert huge.code == "INVALID_REQUEST", huge
            with pytest.raises(TypeError):
                await client.authenticate("{}")  # type: ignore[arg-type]
            assert client.in_flight == 0
        with pytest.raises(tac.TucanoConnectionError, match="closed"):
            await client.authenticate(by_number("S0000000329"))

    asyncio.run(scenario())


def test_a_prefix_no_worker_ever_declared_is_a_connection_error_at_once(worker: Worker) -> None:
    async def scenario() -> None:
        prefix = f"{worker.prefix}-none"
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=prefix) as client:
            for _ in range(2):  # a returned request does not cost the client its channel
                began = time.monotonic()
                with pytest.raises(tac.TucanoConnectionError, match="does not exist"):
                    await client.authenticate(by_number("S0000000329"), timeout=20)
                assert time.monotonic() - began < 5
            assert client.in_flight == 0

    asyncio.run(scenario())


def test_a_thousand_concurrent_calls_on_one_connection_each_get_their_own_reply(
    worker: Worker,
) -> None:
    requests = mixed_requests(CALLS)

    async def scenario() -> List[Any]:
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=worker.prefix) as client:
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, client.in_flight)
                    await asyncio.sleep(0.001)

            watcher = asyncio.ensure_future(watch())
            began = time.monotonic()
            try:
                replies = await asyncio.gather(
                    *(client.authenticate(request, timeout=60) for request, _ in requests)
                )
            finally:
                watcher.cancel()
            took = time.monotonic() - began
            assert client.in_flight == 0
            # They did wait at the same time, not one after the other.
            assert peak >= 100, peak
            print(f"{CALLS} calls on one connection: {took:.2f} s, {peak} waiting at once")
            return replies

    replies = asyncio.run(scenario())
    assert len(replies) == CALLS
    for reply, (_request, expected) in zip(replies, requests):
        check_reply(reply, expected)


def test_a_call_whose_reply_never_comes_times_out_and_leaves_nothing_pending(
    own_worker: Worker,
) -> None:
    async def scenario() -> None:
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=own_worker.prefix) as client:
            reply = await client.authenticate(by_number("S0000000329"), timeout=20)
            check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])
            await asyncio.get_running_loop().run_in_executor(None, own_worker.stop)
            began = time.monotonic()
            with pytest.raises(tac.TucanoTimeout):
                await client.authenticate(by_number("S0000000329"), timeout=2.0)
            took = time.monotonic() - began
            assert 1.9 <= took <= 3.0, took
            assert client.in_flight == 0
            print(f"timeout 2 s: raised after {took:.3f} s")

    asyncio.run(scenario())


def test_a_cancelled_call_leaves_nothing_pending(silent_prefix: str) -> None:
    async def scenario() -> None:
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=silent_prefix) as client:
            call = asyncio.ensure_future(client.authenticate(by_number("S0000000329"), timeout=60))
            await asyncio.sleep(0.5)
            assert client.in_flight == 1
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert client.in_flight == 0

    asyncio.run(scenario())


def test_the_broker_closing_the_connection_fails_every_pending_call_at_once(
    worker: Worker, silent_prefix: str
) -> None:
    waiting = 50

    async def scenario() -> None:
        client = await tac.AsyncClient.connect(AMQP_URL, queue_prefix=silent_prefix)
        failed_at: List[float] = []

        async def call() -> BaseException:
            try:
                await client.authenticate(by_number("S0000000329"), timeout=60)
            except BaseException as err:
                failed_at.append(time.monotonic())
                return err
            raise AssertionError("a reply came on a prefix no worker serves")

        calls = [asyncio.ensure_future(call()) for _ in range(waiting)]
        deadline = time.monotonic() + 30
        while client.in_flight < waiting:
            assert time.monotonic() < deadline, f"only {client.in_flight} calls waiting"
            await asyncio.sleep(0.05)
        closed_at = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(
            None, close_connection_named, client.connection_name
        )
        outcomes = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert all(isinstance(o, tac.TucanoConnectionError) for o in outcomes), outcomes
        assert client.in_flight == 0
        spread = max(failed_at) - min(failed_at)
        assert max(failed_at) - closed_at < 15
        assert spread < 1.0, f"the calls failed {spread:.3f} s apart, not at once"
        print(f"{waiting} waiting calls failed within {spread * 1000:.1f} ms of each other")
        began = time.monotonic()
        with pytest.raises(tac.TucanoConnectionError):
            await client.authenticate(by_number("S0000000329"), timeout=20)
        assert time.monotonic() - began < 1.0
        await client.close()
        async with await tac.AsyncClient.connect(AMQP_URL, queue_prefix=worker.prefix) as fresh:
            reply = await fresh.authenticate(by_number("S0000000329"), timeout=20)
            check_reply(reply, DEMO_SUBSCRIPTIONS["S0000000329"])

    asyncio.run(scenario())


def test_closing_the_client_fails_waiting_calls(silent_prefix: str) -> None:
    async def scenario() -> None:
        client = await tac.AsyncClient.connect(AMQP_URL, queue_prefix=silent_prefix)
        call = asyncio.ensure_future(client.authenticate(by_number("S0000000329"), timeout=60))
        deadline = time.monotonic() + 30
        while client.in_flight < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(tac.TucanoConnectionError, match="closed"):
            await asyncio.wait_for(call, 10)
        await client.close()

    asyncio.run(scenario())
