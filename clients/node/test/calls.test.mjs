// Calls against the real worker: many at once over one connection, a worker that
// never answers, a connection the broker closes, a node list, and hostile arguments.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";

import { connect, TucanoConnectionError, TucanoError, TucanoTimeout } from "../index.js";
import { AMQP_URL, DEMO, StandIn, Worker, closeFromBroker, connectionsNamed, runNode, unique, waitFor } from "./worker.mjs";

/** @type {Worker} */
let worker;
before(async () => {
  worker = await Worker.start("calls");
});
after(async () => {
  await worker?.cleanup();
});

/** The timers alive in this process now. */
const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;

const byNumber = (number) => ({ token: DEMO.token, subscription_identifier: { number } });

test("a thousand concurrent calls over one connection each get their own reply", async (t) => {
  const name = unique("thousand");
  const client = await connect(AMQP_URL, { queuePrefix: worker.prefix, connectionName: name });
  try {
    const numbers = Object.keys(DEMO.subscriptions);
    // Three in four name a demo subscription (three different ids); the fourth names a
    // subscription that does not exist, whose NOT_FOUND message names the number: so
    // every reply shows whose request it answers.
    const requests = Array.from({ length: 1000 }, (_, i) => (i % 4 === 3 ? `SX${i}` : numbers[i % 3]));
    const timersBefore = timers();
    const started = Date.now();
    const calls = requests.map((number) => client.authenticate(byNumber(number), { timeout: 60_000 }));
    assert.equal(client.inFlight, 1000);
    assert.equal(timers(), timersBefore + 1000, "a timeout timer per call");
    const replies = await Promise.all(calls);
    t.diagnostic(`1000 calls answered in ${Date.now() - started} ms`);
    replies.forEach((reply, i) => {
      const number = requests[i];
      if (number in DEMO.subscriptions) {
        assert.equal(reply.code, "OK", `call ${i}: ${reply.message}`);
        assert.equal(reply.subscriptionId, DEMO.subscriptions[number], `call ${i}`);
        assert.match(reply.jwt, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      } else {
        assert.equal(reply.code, "NOT_FOUND", `call ${i}`);
        assert.equal(reply.message, `subscription with number ${number} not found`, `call ${i}`);
        assert.equal(reply.subscriptionId, null);
      }
    });
    assert.equal(client.inFlight, 0);
    assert.equal(timers(), timersBefore, "every call's timer cleared by its reply");
    assert.equal(await connectionsNamed(name), 1, "one connection");
  } finally {
    await client.close();
  }
});

test("a call the stopped worker never answers times out within the timeout plus 1 s and leaves nothing pending", async (t) => {
  const stopped = await Worker.start("stopped");
  try {
    await stopped.stop();
    const client = await connect(AMQP_URL, { queuePrefix: stopped.prefix });
    try {
      const started = Date.now();
      await assert.rejects(client.authenticate(byNumber("S0000000329"), { timeout: 2000 }), (err) => {
        assert.ok(err instanceof TucanoTimeout && err instanceof TucanoError, String(err));
        assert.equal(err.message, "no reply within 2000 ms");
        return true;
      });
      const elapsed = Date.now() - started;
      t.diagnostic(`a 2000 ms timeout rejected after ${elapsed} ms`);
      assert.ok(elapsed >= 1990 && elapsed <= 3000, `timed out after ${elapsed} ms`);
      assert.equal(client.inFlight, 0);
    } finally {
      await client.close();
    }
  } finally {
    await stopped.cleanup();
  }
});

test("a connection closed by the broker fails every pending call at once, and a new client works", async (t) => {
  const silent = await StandIn.start(() => null);
  const name = unique("dropped");
  const client = await connect(AMQP_URL, { queuePrefix: silent.prefix, connectionName: name });
  try {
    const settled = [];
    const calls = Array.from({ length: 100 }, (_, i) =>
      client.authenticate(byNumber(`S${i}`), { timeout: 30_000 }).then(
        () => assert.fail("a reply came"),
        (err) => {
          settled.push(Date.now());
          return err;
        },
      ),
    );
    // Mid-call: every request has reached the (silent) worker.
    await waitFor("100 requests delivered", () => silent.requests.length === 100, 20_000);
    const closing = Date.now();
    await closeFromBroker(name);
    const errors = await Promise.all(calls);
    for (const err of errors) {
      assert.ok(err instanceof TucanoConnectionError, String(err));
      assert.match(err.message, /connection lost/);
    }
    const spread = Math.max(...settled) - Math.min(...settled);
    t.diagnostic(`100 calls failed ${Math.max(...settled) - closing} ms after rabbitmqctl close_connection started, within ${spread} ms of each other`);
    assert.ok(spread <= 1000, `failed over ${spread} ms`);
    assert.equal(client.inFlight, 0);
    // The lost client refuses at once; a new one works.
    await assert.rejects(client.authenticate(byNumber("S0000000329")), TucanoConnectionError);
    const fresh = await connect(AMQP_URL, { queuePrefix: worker.prefix });
    try {
      const reply = await fresh.authenticate(byNumber("S0000000329"));
      assert.equal(reply.subscriptionId, DEMO.subscriptions.S0000000329);
    } finally {
      await fresh.close();
    }
  } finally {
    await client.close();
    await silent.close();
  }
});

test("a node list whose first node refuses connects through the second", async () => {
  // Port 1 refuses. The list is tried from a random start: Math.random chooses it, so
  // the test pins it, to the refusing node first and then to the good one.
  const list = `amqp://guest:guest@127.0.0.1:1/%2f, ${AMQP_URL}`;
  const random = Math.random;
  try {
    for (const start of [0, 0.99]) {
      Math.random = () => start;
      const client = await connect(list, { queuePrefix: worker.prefix });
      try {
        assert.equal((await client.authenticate(byNumber("S0000000331"))).subscriptionId, DEMO.subscriptions.S0000000331);
      } finally {
        await client.close();
      }
    }
  } finally {
    Math.random = random;
  }
  await assert.rejects(connect("amqp://guest:s3cret@127.0.0.1:1/%2f,amqp://guest:s3cret@127.0.0.1:2/%2f"), (err) => {
    assert.ok(err instanceof TucanoConnectionError);
    assert.match(err.message, /^no node of the URL answered \(.*amqp:\/\/127\.0\.0\.1:1\/%2f: connect ECONNREFUSED/);
    assert.match(err.message, /amqp:\/\/127\.0\.0\.1:2\/%2f: connect ECONNREFUSED/);
    assert.doesNotMatch(err.message, /s3cret/);
    return true;
  });
  await assert.rejects(connect(" , "), /names no node/);
  // A URL amqplib cannot read is not echoed either.
  await assert.rejects(connect("guest:s3cret@127.0.0.1"), (err) => {
    assert.match(err.message, /<unparsable URL>/);
    assert.doesNotMatch(err.message, /s3cret/);
    return true;
  });
});

test("a node that accepts the connection and then says nothing is left after 10 s for the next", async (t) => {
  const sockets = [];
  const silent = net.createServer((socket) => sockets.push(socket));
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const random = Math.random;
  Math.random = () => 0;
  try {
    const started = Date.now();
    const client = await connect(`amqp://guest:guest@127.0.0.1:${silent.address().port}/%2f,${AMQP_URL}`, {
      queuePrefix: worker.prefix,
    });
    const elapsed = Date.now() - started;
    t.diagnostic(`connected through the second node after ${elapsed} ms`);
    try {
      assert.ok(sockets.length === 1, "the silent node was tried first");
      assert.ok(elapsed >= 9_900 && elapsed <= 15_000, `after ${elapsed} ms`);
      assert.equal((await client.authenticate(byNumber("S0000000329"))).ok, true);
    } finally {
      await client.close();
    }
  } finally {
    Math.random = random;
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});

test("batch: true sends to the batch queue", async () => {
  const client = await connect(AMQP_URL, { queuePrefix: worker.prefix });
  try {
    const reply = await client.authenticate(byNumber("S0000000330"), { batch: true });
    assert.equal(reply.subscriptionId, DEMO.subscriptions.S0000000330);
  } finally {
    await client.close();
  }
});

test("no worker under the prefix rejects at once, naming the queue", async () => {
  const client = await connect(AMQP_URL, { queuePrefix: unique("nobody") });
  try {
    const started = Date.now();
    await assert.rejects(client.authenticate(byNumber("S1"), { timeout: 20_000 }), (err) => {
      assert.ok(err instanceof TucanoConnectionError);
      assert.match(err.message, /^queue tnode_nobody_\w+\.authenticate does not exist/);
      return true;
    });
    assert.ok(Date.now() - started < 10_000);
    assert.equal(client.inFlight, 0);
  } finally {
    await client.close();
  }
});

test("hostile arguments are refused before anything is sent, and hostile requests get the worker's answer", async () => {
  const client = await connect(AMQP_URL, { queuePrefix: worker.prefix });
  try {
    for (const timeout of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "10", 2 ** 31]) {
      await assert.rejects(client.authenticate(byNumber("S1"), { timeout }), RangeError, `timeout ${timeout}`);
    }
    const cyclic = { token: DEMO.token };
    cyclic.self = cyclic;
    await assert.rejects(client.authenticate(cyclic), TypeError);
    await assert.rejects(client.authenticate({ token: 1n }), TypeError);
    assert.equal(client.inFlight, 0);
    // The worker judges what the client cannot: too large, not JSON, not an object.
    const huge = { token: DEMO.token, subscription_identifier: { number: "S".repeat(70_000) } };
    for (const request of [huge, "not json", "[]", '{"token":"\\ud800"}']) {
      const reply = await client.authenticate(request);
      assert.ok(!reply.ok && reply.message !== "", `${String(request).slice(0, 20)}: ${reply.code}`);
    }
    assert.equal((await client.authenticate(JSON.stringify(byNumber("S0000000329")))).code, "OK");
    assert.equal((await client.authenticate(Buffer.from(JSON.stringify(byNumber("S0000000330"))))).code, "OK");
    assert.equal((await client.authenticate(new Uint8Array([0xff, 0xfe]))).code, "INVALID_REQUEST");
  } finally {
    await client.close();
  }
  await assert.rejects(connect(AMQP_URL, { clientCert: "/nonexistent.pem" }), TypeError);
  await assert.rejects(connect(AMQP_URL, { caFile: "/nonexistent/ca.pem" }), (err) => {
    assert.ok(err instanceof TucanoConnectionError);
    assert.match(err.message, /cannot read the CA file \/nonexistent\/ca.pem/);
    return true;
  });
  await assert.rejects(connect(AMQP_URL, { queuePrefix: "" }), TypeError);
});

test("close ends every pending call and leaves no timer keeping the process alive", async () => {
  const silent = await StandIn.start(() => null);
  try {
    const started = Date.now();
    const child = await runNode([new URL("fixtures/close-exits.mjs", import.meta.url).pathname, AMQP_URL, silent.prefix]);
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout.trim(), "10 calls rejected with TucanoConnectionError: the client was closed; 0 in flight");
    // The calls had 10-minute timeouts: the process ended long before any of them
    // (runNode kills it at 30 s, which would fail the status check above).
    assert.ok(Date.now() - started < 30_000);
  } finally {
    await silent.close();
  }
});
