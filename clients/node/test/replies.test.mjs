// Replies the real worker never sends, from a stand-in worker on the real broker:
// each must reject with TucanoBadReply, saying what is wrong but never what the body
// holds. And the schema the package ships must be the repository's.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { inspect } from "node:util";
import { test } from "node:test";

import { connect, TucanoBadReply, TucanoError } from "../index.js";
import { AMQP_URL, StandIn, waitFor } from "./worker.mjs";

const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyaWQiOiJTMSJ9.c2lnbmF0dXJlc2VjcmV0";
const ok = (data, status = {}) => JSON.stringify({ data, status: { code: "OK", description: "", message: "", ...status } });
const GOOD_DATA = { subscription_id: "75E3E50139F24DC3A6C9AA0C026D0292", jwt: JWT };

/** Reply bodies by the request's token, each with the reason the schema check gives. */
const BAD = {
  "not-json": ["not json at all", /not UTF-8 JSON/],
  "not-utf8": [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /not UTF-8 JSON/],
  empty: ["", /not UTF-8 JSON/],
  array: ["[]", /\(root\) must be object/],
  "unknown-code": [JSON.stringify({ data: null, status: { code: "MAYBE", description: "d", message: "m" } }), /\/status\/code/],
  "ok-without-data": [ok(null), /\/data must be object/],
  "error-with-data": [JSON.stringify({ data: GOOD_DATA, status: { code: "NOT_FOUND", description: "d", message: "m" } }), /\/data must be null/],
  "lower-case-id": [ok({ ...GOOD_DATA, subscription_id: GOOD_DATA.subscription_id.toLowerCase() }), /\/data\/subscription_id/],
  "jwt-newline": [ok({ ...GOOD_DATA, jwt: `${JWT}\n` }), /\/data\/jwt/],
  "ok-with-message": [ok(GOOD_DATA, { message: JWT }), /\/status\/message/],
  "extra-field": [JSON.stringify({ data: null, status: { code: "NOT_FOUND", description: "d", message: "m" }, jwt: JWT }), /\(root\) must NOT have additional properties/],
  huge: [ok({ ...GOOD_DATA, jwt: `${"a".repeat(70_000)}.b.c` }), /over 65536/],
};

test("a reply that does not match the reply schema rejects with TucanoBadReply", async () => {
  const standIn = await StandIn.start((message) => {
    const { token } = JSON.parse(message.content.toString());
    return token === "good" ? ok(GOOD_DATA) : BAD[token][0];
  });
  const client = await connect(AMQP_URL, { queuePrefix: standIn.prefix });
  try {
    // The stand-in's good reply passes: the failures below are the bodies' doing.
    const good = await client.authenticate({ token: "good", subscription_identifier: { number: "S1" } });
    assert.equal(good.jwt, JWT);
    assert.doesNotMatch(inspect(good), /signaturesecret/, "inspect leaves the JWT out");
    for (const [token, [, reason]] of Object.entries(BAD)) {
      await assert.rejects(client.authenticate({ token, subscription_identifier: { number: "S1" } }), (err) => {
        assert.ok(err instanceof TucanoBadReply && err instanceof TucanoError, `${token}: ${err}`);
        assert.match(err.message, reason, token);
        assert.doesNotMatch(err.message, /signaturesecret|eyJ/, `${token}: no JWT in the error`);
        return true;
      });
    }
    // Bad replies cost the connection nothing: the next call works.
    assert.equal((await client.authenticate({ token: "good", subscription_identifier: { number: "S1" } })).ok, true);
    assert.equal(client.inFlight, 0);
  } finally {
    await client.close();
    await standIn.close();
  }
});

test("replies are matched by correlation id: a stray or unlabelled one is dropped", async () => {
  const standIn = await StandIn.start(() => null);
  const client = await connect(AMQP_URL, { queuePrefix: standIn.prefix });
  try {
    const call = client.authenticate({ token: "T", subscription_identifier: { number: "S1" } }, { timeout: 20_000 });
    await waitFor("the request", () => standIn.requests.length === 1, 10_000);
    const { replyTo, correlationId } = standIn.requests[0].properties;
    const channel = await standIn.connection.createChannel();
    const notFound = (message) =>
      Buffer.from(JSON.stringify({ data: null, status: { code: "NOT_FOUND", description: "d", message } }));
    channel.publish("", replyTo, notFound("stray"), { correlationId: `${correlationId}x` });
    channel.publish("", replyTo, notFound("unlabelled"), {});
    channel.publish("", replyTo, Buffer.from("not even JSON"), { correlationId: "someone-else" });
    channel.publish("", replyTo, notFound("mine"), { correlationId });
    assert.equal((await call).message, "mine");
    assert.equal(client.inFlight, 0);
    await channel.close();
  } finally {
    await client.close();
    await standIn.close();
  }
});

test("the reply schema the package ships is the repository's", () => {
  const shipped = readFileSync(new URL("../schemas/reply.schema.json", import.meta.url), "utf8");
  const published = readFileSync(new URL("../../../schemas/reply.schema.json", import.meta.url), "utf8");
  assert.equal(shipped, published, "copy schemas/reply.schema.json to clients/node/schemas/");
});
