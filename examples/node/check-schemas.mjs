// Validates a corpus of request bodies against schemas/request.schema.json with Ajv 8
// (draft 2020-12, strict mode), for the test that checks every language reads the
// published schemas the same way. Both schemas must compile with no strict-mode warning.
//
//   node examples/node/check-schemas.mjs CORPUS.json
//
// CORPUS.json is a JSON array of request bodies as JSON text; prints a JSON array of
// booleans (valid or not), one per body.
import fs from "node:fs";
import Ajv2020Module from "ajv/dist/2020.js";

const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module;
const schemaDir = new URL("../../schemas/", import.meta.url);
const warnings = [];
const logger = { log() {}, warn: (...args) => warnings.push(args.join(" ")), error: (...args) => warnings.push(args.join(" ")) };

// Default options, warnings collected: strictTypes only warns by default.
const ajv = new Ajv2020({ logger });
const validate = ajv.compile(JSON.parse(fs.readFileSync(new URL("request.schema.json", schemaDir))));
ajv.compile(JSON.parse(fs.readFileSync(new URL("reply.schema.json", schemaDir))));
// strict: true turns every strict-mode warning into an error.
for (const name of ["request", "reply"]) {
  new Ajv2020({ strict: true, logger }).compile(JSON.parse(fs.readFileSync(new URL(`${name}.schema.json`, schemaDir))));
}
if (warnings.length > 0) {
  console.error(`strict mode: ${warnings.join("; ")}`);
  process.exit(3);
}
const bodies = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
console.log(JSON.stringify(bodies.map((body) => validate(JSON.parse(body)))));
