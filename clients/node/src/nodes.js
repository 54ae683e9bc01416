// The URL as a list of the nodes of one RabbitMQ cluster (docs/protocol.md section 11):
// split on commas, tried in turn from a random start so that clients spread over the
// cluster, and named in messages without their credentials.

/**
 * The node URLs of a comma-separated URL, blanks dropped.
 * @param {string} url
 * @returns {string[]}
 */
export function splitNodes(url) {
  return url
    .split(",")
    .map((node) => node.trim())
    .filter((node) => node !== "");
}

/**
 * A node URL fit for a message: `user:password@` removed.
 * @param {string} url
 * @returns {string}
 */
export function redact(url) {
  const schemeEnd = url.indexOf("://");
  if (schemeEnd < 0) return "<unparsable URL>";
  const rest = url.slice(schemeEnd + 3);
  const slash = rest.indexOf("/");
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash);
  const at = authority.lastIndexOf("@");
  return `${url.slice(0, schemeEnd)}://${at < 0 ? authority : authority.slice(at + 1)}${path}`;
}

/**
 * Calls `open` on each node once, starting at a random one, and returns the first
 * success; throws `fail(message)` listing every node's failure when none answers.
 * @template T
 * @param {string[]} nodes
 * @param {(node: string) => Promise<T>} open
 * @param {(message: string) => Error} fail
 * @returns {Promise<T>}
 */
export async function openAny(nodes, open, fail) {
  if (nodes.length === 0) throw fail("the URL names no node");
  const start = Math.floor(Math.random() * nodes.length);
  const failures = [];
  for (let offset = 0; offset < nodes.length; offset += 1) {
    const node = nodes[(start + offset) % nodes.length];
    try {
      return await open(node);
    } catch (err) {
      failures.push(`${redact(node)}: ${describe(err)}`);
    }
  }
  throw fail(`no node of the URL answered (${failures.join("; ")})`);
}

/**
 * An error's message without the URL amqplib may echo (it can hold a password).
 * @param {unknown} err
 * @returns {string}
 */
export function describe(err) {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s,;)]*/gi, (url) => redact(url));
}
