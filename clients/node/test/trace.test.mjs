// Trace context (docs/protocol.md section 15): with @opentelemetry/api installed (a
// dev dependency here) and a span active, the request carries `traceparent` and
// `tracestate`; without the package installed, the client loads and calls work.

import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { after, before, test } from "node:test";
import * as api from "@opentelemetry/api";

import { connect } from "../index.js";
import { AMQP_URL, DEMO, StandIn, Worker, runNode } from "./worker.mjs";

const REQUEST = { token: DEMO.token, subscription_identifier: { number: "S0000000329" } };
const OK_REPLY = JSON.stringify({
  data: { subscription_id: DEMO.subscriptions.S0000000329, jwt: "a.b.c" },
  status: { code: "OK", description: "", message: "" },
});

/** What an OpenTelemetry SDK registers: a context that follows async calls. */
class AsyncContextManager {
  #storage = new AsyncLocalStorage();
  active() {
    return this.#storage.getStore() ?? api.ROOT_CONTEXT;
  }
  with(context, fn, thisArg, ...args) {
    return this.#storage.run(context, () => fn.call(thisArg, ...args));
  }
  bind(_context, target) {
    return target;
  }
  enable() {
    return this;
  }
  disable() {
    this.#storage.disable();
    return this;
  }
}

let worker;
before(async () => {
  api.context.setGlobalContextManager(new AsyncContextManager());
  worker = await Worker.start("trace");
});
after(async () => {
  api.context.disable();
  await worker?.cleanup();
});

const SPAN = {
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  traceFlags: api.TraceFlags.SAMPLED,
  traceState: api.createTraceState("vendor=value,other=1"),
};

test("the caller's span goes out as traceparent and tracestate headers", async () => {
  const standIn = await StandIn.start(() => OK_REPLY);
  const client = await connect(AMQP_URL, { queuePrefix: standIn.prefix });
  try {
    const inSpan = api.trace.setSpanContext(api.context.active(), SPAN);
    assert.equal((await api.context.with(inSpan, () => client.authenticate(REQUEST))).ok, true);
    assert.equal((await client.authenticate(REQUEST)).ok, true);
    const [traced, untraced] = standIn.requests.map((message) => message.properties.headers ?? {});
    assert.equal(traced.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert.equal(traced.tracestate, "vendor=value,other=1");
    assert.equal(untraced.traceparent, undefined, "no span, no traceparent");
  } finally {
    await client.close();
    await standIn.close();
  }
});

test("the real worker answers a traced call", async () => {
  const client = await connect(AMQP_URL, { queuePrefix: worker.prefix });
  try {
    const inSpan = api.trace.setSpanContext(api.context.active(), { ...SPAN, traceState: undefined });
    const reply = await api.context.with(inSpan, () => client.authenticate(REQUEST));
    assert.equal(reply.subscriptionId, DEMO.subscriptions.S0000000329);
  } finally {
    await client.close();
  }
});

test("without @opentelemetry/api installed the package loads and calls work", async () => {
  const standIn = await StandIn.start(() => OK_REPLY);
  try {
    const fixture = (name) => new URL(`fixtures/${name}`, import.meta.url).pathname;
    // The hook makes @opentelemetry/api unresolvable, as in a project that lacks it.
    const child = await runNode(["--import", fixture("hide-otel.mjs"), fixture("one-call.mjs"), AMQP_URL, standIn.prefix]);
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout.trim(), "@opentelemetry/api: ERR_MODULE_NOT_FOUND; reply: OK");
    assert.equal(standIn.requests.length, 1);
    assert.equal(standIn.requests[0].properties.headers?.traceparent, undefined);
  } finally {
    await standIn.close();
  }
});
