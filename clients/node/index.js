// @tucano/auth-client: call the tucano-auth worker from Node.js over RabbitMQ.
// README.md beside this file shows the use; src/client.js holds the design.

export { connect, TucanoClient } from "./src/client.js";
export { TucanoBadReply, TucanoConnectionError, TucanoError, TucanoTimeout } from "./src/errors.js";
export { Reply } from "./src/reply.js";
