// The client: one AMQP connection and one confirm channel, on which it consumes
// RabbitMQ's direct reply-to pseudo-queue before it publishes anything (direct
// reply-to requires both on the same channel). Every request is published persistent
// and mandatory, with publisher confirms and a correlation id of its own; each reply is
// handed to the call waiting for its correlation id, so any number of calls may wait
// at once over the one connection. The same behaviour as the Rust client
// (src/client/ in the repository); docs/protocol.md is the interface.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import amqp from "amqplib";

import { TucanoBadReply, TucanoConnectionError, TucanoError, TucanoTimeout } from "./errors.js";
import { describe, openAny, splitNodes } from "./nodes.js";
import { parseReply } from "./reply.js";
import { loadOtel, traceHeaders } from "./trace.js";

/** RabbitMQ's direct reply-to pseudo-queue. */
const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to";
/** How long one node may take to accept the connection before the next is tried. */
const CONNECT_TIMEOUT_MS = 10_000;
/** setTimeout's largest delay; a longer timeout would fire at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * @typedef {{ queuePrefix?: string, caFile?: string, clientCert?: string,
 *             clientKey?: string, connectionName?: string }} ConnectOptions
 * @typedef {{ resolve: (reply: import("./reply.js").Reply) => void,
 *             reject: (err: TucanoError) => void,
 *             timer: NodeJS.Timeout }} Waiter
 */

/**
 * Connects to the broker and starts listening for replies.
 *
 * `url` is one AMQP URL or a comma-separated list of the nodes of one cluster, tried
 * in turn from a random start until one answers.
 * @param {string} url
 * @param {ConnectOptions} [options]
 * @returns {Promise<TucanoClient>}
 */
export async function connect(url, options = {}) {
  const { queuePrefix = "tucano", caFile, clientCert, clientKey } = options;
  const connectionName = options.connectionName ?? `tucano-auth-client node ${process.pid}`;
  if (typeof url !== "string") throw new TypeError("url must be a string");
  if (typeof queuePrefix !== "string" || queuePrefix === "") {
    throw new TypeError("queuePrefix must be a non-empty string");
  }
  if ((clientCert === undefined) !== (clientKey === undefined)) {
    throw new TypeError("clientCert and clientKey go together");
  }
  const tls = {
    ca: caFile === undefined ? undefined : [readTlsFile("CA", caFile)],
    cert: clientCert === undefined ? undefined : readTlsFile("client certificate", clientCert),
    key: clientKey === undefined ? undefined : readTlsFile("client key", clientKey),
  };
  const otel = await loadOtel();
  const connection = await openAny(
    splitNodes(url),
    (node) =>
      amqp.connect(node, {
        // The TLS files only matter to amqps:// nodes; net.connect ignores them.
        ...Object.fromEntries(Object.entries(tls).filter(([, value]) => value !== undefined)),
        timeout: CONNECT_TIMEOUT_MS,
        clientProperties: { connection_name: connectionName },
      }),
    (message) => new TucanoConnectionError(message),
  );
  try {
    const channel = await connection.createConfirmChannel();
    const client = new TucanoClient(connection, channel, queuePrefix, otel);
    await client._listen();
    return client;
  } catch (err) {
    await connection.close().catch(() => {});
    throw err instanceof TucanoError ? err : new TucanoConnectionError(`connection lost: ${describe(err)}`);
  }
}

/**
 * @param {string} what
 * @param {string} path
 * @returns {Buffer}
 */
function readTlsFile(what, path) {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TucanoConnectionError(`cannot read the ${what} file ${path}: ${describe(err)}`);
  }
}

/** A connection to the broker for calling the worker; made by `connect`. */
export class TucanoClient {
  /** @type {import("amqplib").ChannelModel} */
  #connection;
  /** @type {import("amqplib").ConfirmChannel} */
  #channel;
  #queues;
  /** @type {import("./trace.js").OtelApi | null} */
  #otel;
  /** @type {Map<string, Waiter>} */
  #waiting = new Map();
  /** Why no call can be answered any more, once the connection is gone. */
  /** @type {string | null} */
  #closed = null;
  /** This client's part of every correlation id, so two clients never collide. */
  #idPrefix = randomUUID();
  #nextId = 0;

  /**
   * @param {import("amqplib").ChannelModel} connection
   * @param {import("amqplib").ConfirmChannel} channel
   * @param {string} queuePrefix
   * @param {import("./trace.js").OtelApi | null} otel
   */
  constructor(connection, channel, queuePrefix, otel) {
    this.#connection = connection;
    this.#channel = channel;
    this.#queues = { interactive: `${queuePrefix}.authenticate`, batch: `${queuePrefix}.authenticate.batch` };
    this.#otel = otel;
  }

  /**
   * Wires the connection's events and starts the reply consumer. Internal: `connect`
   * calls it once.
   */
  async _listen() {
    const lost = (/** @type {unknown} */ err) =>
      this.#fail(err ? `connection lost: ${describe(err)}` : "connection lost");
    // Without an 'error' listener an emitter's error would crash the caller's process.
    this.#connection.on("error", lost);
    this.#connection.on("close", lost);
    // The client cannot work without its channel: a channel closed by the broker
    // (the connection still open) ends the client too, connection included, so that
    // nothing is left open behind a client that only rejects.
    const channelLost = (/** @type {unknown} */ err) => {
      lost(err ?? new Error("the channel was closed"));
      this.#connection.close().catch(() => {});
    };
    this.#channel.on("error", channelLost);
    this.#channel.on("close", () => channelLost(null));
    // A mandatory request that no queue takes comes back before its confirm.
    this.#channel.on("return", (/** @type {import("amqplib").Message} */ message) => {
      const queue = message.fields.routingKey;
      this.#settle(message.properties.correlationId, (waiter) =>
        waiter.reject(
          new TucanoConnectionError(`queue ${queue} does not exist: is a worker running with this queue prefix?`),
        ),
      );
    });
    await this.#channel.consume(
      DIRECT_REPLY_TO,
      (message) => {
        if (message === null) {
          this.#fail("the broker cancelled the reply consumer");
          return;
        }
        // No waiter: the call timed out; its reply is late and dropped.
        this.#settle(message.properties.correlationId, (waiter) => {
          try {
            waiter.resolve(parseReply(message.content));
          } catch (err) {
            waiter.reject(err instanceof TucanoError ? err : new TucanoBadReply(String(err)));
          }
        });
      },
      { noAck: true },
    );
  }

  /**
   * Sends one request to the worker and waits for its reply.
   * @param {object | string | Uint8Array} request a request body (docs/protocol.md section 3): an object, or JSON text or bytes sent as they are
   * @param {{ timeout?: number, batch?: boolean }} [options] timeout in milliseconds (default 10000); batch: the batch queue
   * @returns {Promise<import("./reply.js").Reply>}
   */
  authenticate(request, options = {}) {
    const { timeout = 10_000, batch = false } = options;
    if (typeof timeout !== "number" || !(timeout > 0) || timeout > MAX_TIMEOUT_MS) {
      return Promise.reject(new RangeError(`timeout must be a number of milliseconds in (0, ${MAX_TIMEOUT_MS}]`));
    }
    let body;
    try {
      body =
        request instanceof Uint8Array
          ? Buffer.from(request)
          : Buffer.from(typeof request === "string" ? request : JSON.stringify(request), "utf8");
    } catch (err) {
      return Promise.reject(new TypeError(`the request cannot be written as JSON: ${describe(err)}`));
    }
    if (this.#closed !== null) return Promise.reject(new TucanoConnectionError(this.#closed));
    const queue = batch ? this.#queues.batch : this.#queues.interactive;
    const id = `${this.#idPrefix}-${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(id, (waiter) => waiter.reject(new TucanoTimeout(`no reply within ${timeout} ms`)));
      }, timeout);
      this.#waiting.set(id, { resolve, reject, timer });
      try {
        this.#channel.publish(
          "",
          queue,
          body,
          {
            correlationId: id,
            replyTo: DIRECT_REPLY_TO,
            contentType: "application/json",
            persistent: true,
            mandatory: true,
            headers: traceHeaders(this.#otel),
          },
          (err) => {
            if (err) {
              this.#settle(id, (waiter) =>
                waiter.reject(new TucanoConnectionError(`the broker refused the request to ${queue}`)),
              );
            }
          },
        );
      } catch (err) {
        this.#settle(id, (waiter) => waiter.reject(new TucanoConnectionError(`connection lost: ${describe(err)}`)));
      }
    });
  }

  /** How many calls are waiting for their reply now. */
  get inFlight() {
    return this.#waiting.size;
  }

  /**
   * Closes the connection; calls still waiting reject with TucanoConnectionError.
   * @returns {Promise<void>}
   */
  async close() {
    this.#fail("the client was closed");
    // Already closed (by an earlier close, or by the broker): amqplib refuses, harmlessly.
    await this.#connection.close().catch(() => {});
  }

  /**
   * Removes the call `id` and, if it was still waiting, settles it with `how`.
   * @param {string | undefined} id
   * @param {(waiter: Waiter) => void} how
   */
  #settle(id, how) {
    if (id === undefined) return;
    const waiter = this.#waiting.get(id);
    if (waiter === undefined) return;
    this.#waiting.delete(id);
    clearTimeout(waiter.timer);
    how(waiter);
  }

  /**
   * Fails every waiting call, and every later one, with `reason`; the first reason
   * wins (a close by the caller is not reported as a lost connection).
   * @param {string} reason
   */
  #fail(reason) {
    this.#closed ??= reason;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const waiter of waiting) {
      clearTimeout(waiter.timer);
      waiter.reject(new TucanoConnectionError(this.#closed));
    }
  }
}
