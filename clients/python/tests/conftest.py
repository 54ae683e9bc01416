"""The test harness: a real ``tucano-auth serve --demo`` on its own database and queue
prefix, started from the binary (``TUCANO_AUTH_BIN``, by default the repository's
``target/debug/tucano-auth``) and stopped, its queues deleted and its database dropped,
afterwards. RabbitMQ and PostgreSQL are the machine's (``AMQP_URL``, ``PG_SERVER``).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pika
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
PG_SERVER = os.environ.get("PG_SERVER", "postgres://postgres@127.0.0.1:5432")
BINARY = os.environ.get("TUCANO_AUTH_BIN", str(REPO / "target" / "debug" / "tucano-auth"))

#: The demo data's login token, and subscriptions by number with their ids (README).
TOKEN = "35108255345D4F98ABFD7810A08E432F"
DEMO_SUBSCRIPTIONS = {
    "S0000000329": "75E3E50139F24DC3A6C9AA0C026D0292",
    "S0000000330": "DE000000000040008000000000000030",
    "S0000000331": "DE000000000040008000000000000031",
}


def by_number(number: str) -> Dict[str, Any]:
    """A request naming a subscription by number, with the demo token."""
    return {"token": TOKEN, "subscription_identifier": {"number": number}}


def broker() -> Any:
    """A plain pika connection of the test's own (not through the client under test)."""
    return pika.BlockingConnection(pika.URLParameters(AMQP_URL))


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", f"{PG_SERVER}/postgres", "-q", "-v", "ON_ERROR_STOP=1",
         "-c", "SET client_min_messages = warning", "-c", sql],
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
    )


def delete_queues(prefix: str) -> None:
    """Deletes the queues and exchanges the worker (or a test) declared under ``prefix``."""
    connection = broker()
    try:
        for queue in [
            f"{prefix}.authenticate",
            f"{prefix}.authenticate.batch",
            f"{prefix}.dead-letter",
        ]:
            channel = connection.channel()
            try:
                channel.queue_delete(queue)
                channel.close()
            except pika.exceptions.AMQPChannelError:
                pass
        for exchange in [f"{prefix}.results", f"{prefix}.dead-letter"]:
            channel = connection.channel()
            try:
                channel.exchange_delete(exchange)
                channel.close()
            except pika.exceptions.AMQPChannelError:
                pass
    finally:
        connection.close()


def consumers(queue: str) -> Optional[int]:
    """The consumer count of ``queue``, or ``None`` when it does not exist."""
    connection = broker()
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return None
    finally:
        if connection.is_open:
            connection.close()


class Worker:
    """One ``tucano-auth serve --demo`` process on its own database and prefix."""

    def __init__(self) -> None:
        self.prefix = f"tpy_{uuid.uuid4().hex[:12]}"
        self.database = self.prefix
        self.log = open(f"/tmp/{self.prefix}.log", "wb")
        self.process: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            AMQP_URL=AMQP_URL,
            DATABASE_URL=f"{PG_SERVER}/{self.database}",
            QUEUE_PREFIX=self.prefix,
            METRICS_ADDR="127.0.0.1:0",
            TUCANO_JWT_SECRET="test-jwt-secret-0123456789abcdef0123456789",
            RUST_LOG="info",
        )
        self.process = subprocess.Popen(
            [BINARY, "serve", "--demo"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 120
        while (consumers(f"{self.prefix}.authenticate") or 0) < 1:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not consume within 120 s:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        """The end of the worker's log, for a failure message (the file goes at cleanup)."""
        self.log.flush()
        return pathlib.Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM, and waits for the worker to exit (its queues stay)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        delete_queues(self.prefix)
        psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture(scope="session")
def worker() -> Iterator[Worker]:
    """A worker shared by the tests that do not stop it."""
    worker = Worker()
    try:
        worker.start()
        yield worker
    finally:
        worker.cleanup()


@pytest.fixture
def own_worker() -> Iterator[Worker]:
    """A worker of the test's own, which it may stop."""
    worker = Worker()
    try:
        worker.start()
        yield worker
    finally:
        worker.cleanup()


@pytest.fixture
def silent_prefix() -> Iterator[str]:
    """A prefix whose interactive queue exists (declared here) but which no worker
    consumes: requests are routed, and never answered."""
    prefix = f"tpy_{uuid.uuid4().hex[:12]}"
    connection = broker()
    try:
        connection.channel().queue_declare(f"{prefix}.authenticate", durable=True)
    finally:
        connection.close()
    try:
        yield prefix
    finally:
        delete_queues(prefix)


def rabbitmqctl_json(*args: str) -> Any:
    output = subprocess.run(
        ["rabbitmqctl", *args, "--formatter", "json", "-q"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return json.loads(output or b"[]")


def connection_names() -> List[str]:
    """The client-provided names of the broker's connections."""
    return [
        prop[2]
        for connection in rabbitmqctl_json("list_connections", "client_properties")
        for prop in connection.get("client_properties") or []
        if prop[0] == "connection_name"
    ]


def close_connection_named(name: str) -> None:
    """Closes, from the broker's side, the connection whose client-provided name is
    ``name`` (``rabbitmqctl close_connection``)."""
    pid = None
    for connection in rabbitmqctl_json("list_connections", "pid", "client_properties"):
        for prop in connection.get("client_properties") or []:
            if prop[0] == "connection_name" and prop[2] == name:
                pid = connection["pid"]
    assert pid is not None, f"no broker connection named {name!r}"
    # The JSON formatter prints `#PID<N.X.Y>`; close_connection takes `<node.N.X.Y>`.
    local = pid.removeprefix("#PID<").removesuffix(">").split(".", 1)[1]
    plain = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    node_pid = next(
        line.strip() for line in plain.splitlines() if line.strip().endswith(f".{local}>")
    )
    subprocess.run(
        ["rabbitmqctl", "-q", "close_connection", node_pid, "closed by a test"],
        check=True,
        timeout=60,
    )
