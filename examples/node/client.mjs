// Calling tucano-auth from Node.js: request-reply over RabbitMQ direct reply-to.
//
//   cd examples/node && npm ci
//   node client.mjs '{"token": "35108255345D4F98ABFD7810A08E432F",
//     "subscription_identifier": {"number": "S0000000329"}}'
//
// Environment: AMQP_URL (one URL, or a comma-separated list of cluster nodes, tried in
// turn) and QUEUE_PREFIX, as the worker reads them. Every reply is checked against
// schemas/reply.schema.json with Ajv 8 (draft 2020-12, default options) before it is
// used. Exit status: 0 on OK, 1 on any other status code, 2 when no valid reply came.
import fs from "node:fs";
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import Ajv2020Module from "ajv/dist/2020.js";

const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module;
const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to";
const DEMO_REQUEST = {
  token: "35108255345D4F98ABFD7810A08E432F",
  subscription_identifier: { number: "S0000000329" },
};

/** A client: one connection, one confirm channel, any number of concurrent calls. */
export class TucanoClient {
  static async connect(amqpUrl, queuePrefix) {
    const errors = [];
    for (const node of amqpUrl.split(",").map((n) => n.trim()).filter(Boolean)) {
      try {
        const connection = await amqp.connect(node);
        const client = new TucanoClient(connection, `${queuePrefix}.authenticate`);
        await client.#start();
        return client;
      } catch (err) {
        errors.push(String(err));
      }
    }
    throw new Error(`no node of AMQP_URL answered: ${errors.join("; ")}`);
  }

  #connection;
  #queue;
  #channel;
  #waiting = new Map();

  constructor(connection, queue) {
    this.#connection = connection;
    this.#queue = queue;
  }

  async #start() {
    this.#channel = await this.#connection.createConfirmChannel();
    // The consumer must exist before a request names it as reply_to.
    await this.#channel.consume(DIRECT_REPLY_TO, (message) => {
      const waiter = message && this.#waiting.get(message.properties.correlationId);
      if (waiter) {
        this.#waiting.delete(message.properties.correlationId);
        clearTimeout(waiter.timer);
        waiter.resolve(JSON.parse(message.content.toString("utf8")));
      } // else: a late reply to a call that timed out
    }, { noAck: true });
    // A mandatory request that no queue takes comes back: no worker declared the queue.
    this.#channel.on("return", (message) => {
      const waiter = this.#waiting.get(message.properties.correlationId);
      if (waiter) {
        this.#waiting.delete(message.properties.correlationId);
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`queue ${this.#queue} does not exist: is a worker running with this QUEUE_PREFIX?`));
      }
    });
    const failAll = (why) => {
      for (const [id, waiter] of this.#waiting) {
        this.#waiting.delete(id);
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`connection lost: ${why}`));
      }
    };
    this.#connection.on("close", () => failAll("closed"));
    this.#connection.on("error", (err) => failAll(String(err)));
  }

  /** Sends one request (an object) and resolves with the reply body (an object). */
  authenticate(request, timeoutMs) {
    return new Promise((resolve, reject) => {
      const correlationId = randomUUID();
      const timer = setTimeout(() => {
        this.#waiting.delete(correlationId);
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(correlationId, { resolve, reject, timer });
      this.#channel.publish("", this.#queue, Buffer.from(JSON.stringify(request)), {
        correlationId,
        replyTo: DIRECT_REPLY_TO,
        contentType: "application/json",
        persistent: true,
        mandatory: true,
      }, (err) => {
        if (err) {
          this.#waiting.delete(correlationId);
          clearTimeout(timer);
          reject(new Error(`the broker refused the request: ${err}`));
        }
      });
    });
  }

  async close() {
    await this.#connection.close();
  }
}

async function main() {
  const request = process.argv[2] ? JSON.parse(process.argv[2]) : DEMO_REQUEST;
  const amqpUrl = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";
  const prefix = process.env.QUEUE_PREFIX ?? "tucano";
  const schema = JSON.parse(fs.readFileSync(new URL("../../schemas/reply.schema.json", import.meta.url)));
  const validateReply = new Ajv2020().compile(schema);
  let client;
  try {
    client = await TucanoClient.connect(amqpUrl, prefix);
  } catch (err) {
    console.error(`error: ${err.message}`);
    return 2;
  }
  try {
    const reply = await client.authenticate(request, 10_000);
    if (!validateReply(reply)) {
      console.error(`error: the reply does not match its schema: ${JSON.stringify(validateReply.errors)}`);
      return 2;
    }
    console.log(JSON.stringify(reply));
    return reply.status.code === "OK" ? 0 : 1;
  } catch (err) {
    console.error(`error: ${err.message}`);
    return 2;
  } finally {
    await client.close();
  }
}

process.exitCode = await main();
