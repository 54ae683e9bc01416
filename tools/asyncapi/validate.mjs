// Validates an AsyncAPI document with the AsyncAPI parser (@asyncapi/parser), the same
// parser the AsyncAPI CLI and Studio use: the specification's JSON Schema, the
// parser's Spectral ruleset, the AMQP bindings, and every $ref (the message payloads
// refer to ../../schemas/*.schema.json, read from disk relative to the document).
//
// Two checks the parser does not make for AsyncAPI 3 documents are added here:
// - The payload schemas are JSON Schema draft 2020-12, a format the parser accepts but
//   cannot check by itself, so this script registers a schema parser for it: each such
//   schema must pass the draft 2020-12 meta-schema and compile with Ajv in strict mode.
// - Every message example must match its message's payload and headers schemas.
//
// Prints every diagnostic; exits 1 when any is an error, 0 otherwise.
//   node tools/asyncapi/validate.mjs asyncapi.yaml

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';

import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import Ajv from 'ajv';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const DRAFT_2020_12 = [
  'application/schema+json;version=draft-2020-12',
  'application/schema+yaml;version=draft-2020-12',
];

/** Diagnostics of this script's own checks, in the parser's shape. */
const extra = [];

/** Compiled draft 2020-12 payload validators, by the payload object of their message. */
const payloadValidators = new WeakMap();

function problem(pathParts, message) {
  extra.push({ code: 'tucano-check', severity: DiagnosticSeverity.Error, path: pathParts, message });
}

/**
 * Checks a draft 2020-12 schema and compiles it. A fresh Ajv per schema: the same file
 * is referenced by several messages, and Ajv refuses a second schema with one $id.
 */
function compile2020(data, where) {
  // Strict: unknown keywords, formats and ignored keywords are errors. strictTypes is
  // off: it is a lint that wants `type` beside every `required`, even in an `if`
  // subschema where the standard's reading is the intended one.
  const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true });
  addFormats(ajv);
  if (!ajv.validateSchema(data)) {
    for (const error of ajv.errors) {
      problem(where, `not a valid draft 2020-12 schema: ${error.instancePath || '/'} ${error.message}`);
    }
    return undefined;
  }
  try {
    return ajv.compile(data);
  } catch (error) {
    problem(where, `draft 2020-12 schema does not compile: ${error.message}`);
    return undefined;
  }
}

/**
 * The schema parser for draft 2020-12 payloads. The parser calls `parse` for every
 * payload of an AsyncAPI 3 document (and `validate` only for AsyncAPI 2), so both check.
 */
const draft202012 = {
  getMimeTypes: () => DRAFT_2020_12,
  async validate(input) {
    const before = extra.length;
    compile2020(input.data, input.path);
    return extra.splice(before).map(({ message, path: where }) => ({ message, path: where }));
  },
  async parse(input) {
    const validator = compile2020(input.data, input.path);
    if (validator && input.meta?.message) {
      payloadValidators.set(input.meta.message, validator);
    }
    return input.data;
  },
};

/** Headers schemas are AsyncAPI schemas: draft 07 plus extensions (`x-...`). */
const draft07 = new Ajv({ strict: false, allErrors: true });
addFormats(draft07);

function ajvErrors(validate) {
  return [...new Set(validate.errors.map((e) => `${e.instancePath || '/'} ${e.message}`))].join('; ');
}

/** Checks every example of every message against its payload and headers schemas. */
function checkExamples(document) {
  for (const message of document.allMessages().all()) {
    const pointer = message.meta().pointer.split('/').filter(Boolean);
    const payloadValidator = payloadValidators.get(message.json().payload);
    const headersValidator = message.hasHeaders() ? draft07.compile(message.headers().json()) : undefined;
    message.examples().all().forEach((example, index) => {
      const where = [...pointer, 'examples', String(index)];
      if (example.hasPayload()) {
        if (!payloadValidator) {
          problem(where, `message ${message.id()} has no draft 2020-12 payload schema to check its example against`);
        } else if (!payloadValidator(example.payload())) {
          problem([...where, 'payload'], `example does not match the payload schema: ${ajvErrors(payloadValidator)}`);
        }
      }
      if (example.hasHeaders()) {
        if (!headersValidator) {
          problem(where, `message ${message.id()} has headers in an example but no headers schema`);
        } else if (!headersValidator(example.headers())) {
          problem([...where, 'headers'], `example does not match the headers schema: ${ajvErrors(headersValidator)}`);
        }
      }
    });
  }
}

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node validate.mjs ASYNCAPI_FILE');
    return 2;
  }
  const source = path.resolve(file);
  const text = await readFile(source, 'utf8');
  const parser = new Parser({ schemaParsers: [draft202012] });

  const diagnostics = await parser.validate(text, { source });
  let summary = '';
  if (!diagnostics.some((d) => d.severity === DiagnosticSeverity.Error)) {
    // parse() builds the document model as generators see it, and runs the payload
    // schemas through their schema parser.
    const { document } = await parser.parse(text, { source });
    if (document) {
      checkExamples(document);
      summary =
        ` (AsyncAPI ${document.version()}: ${document.channels().length} channels,` +
        ` ${document.operations().length} operations, ${document.allMessages().length} messages)`;
    } else {
      problem([], 'the document validates but the parser built no document from it');
    }
  }

  const counts = { error: 0, warning: 0, info: 0, hint: 0 };
  for (const d of [...diagnostics, ...extra]) {
    const severity = SEVERITY[d.severity] ?? String(d.severity);
    counts[severity] = (counts[severity] ?? 0) + 1;
    const where = d.path?.length ? d.path.join('.') : '(document)';
    const line = d.range ? `:${d.range.start.line + 1}` : '';
    const origin = d.source && d.source !== source ? ` in ${path.relative(process.cwd(), d.source)}` : '';
    console.log(`${severity} ${d.code} at ${where}${line}${origin}: ${d.message}`);
  }
  console.log(
    `${file}: ${counts.error} errors, ${counts.warning} warnings, ${counts.info} infos, ${counts.hint} hints${summary}`,
  );
  return counts.error === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
