// An independent JWT verifier for the integration tests: Node's own crypto module,
// nothing of the worker's (no jsonwebtoken, no Rust).
//
// Reads one JSON object on standard input:
//   {"jwks": {"keys": [...]}, "jwts": ["eyJ..", ...]}  for ES256 and EdDSA, or
//   {"secret": "<base64url HS256 key>", "jwts": [...]}  for HS256,
// and prints one JSON line per token: {"ok": true|false, "header": {...},
// "payload": {...}, "error": "..."}. A token verifies only with the key of its
// header's kid (or the secret), by the algorithm that key is published for.
'use strict';
const crypto = require('crypto');

const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const b64 = (part) => Buffer.from(part, 'base64url');

function verify(jwt) {
  const parts = jwt.split('.');
  if (parts.length !== 3) return { ok: false, error: 'not three parts' };
  const header = JSON.parse(b64(parts[0]).toString('utf8'));
  const payload = JSON.parse(b64(parts[1]).toString('utf8'));
  const data = Buffer.from(parts[0] + '.' + parts[1], 'ascii');
  const signature = b64(parts[2]);
  let ok;
  if (input.secret !== undefined) {
    if (header.alg !== 'HS256') return { ok: false, header, error: 'not HS256' };
    const mac = crypto.createHmac('sha256', b64(input.secret)).update(data).digest();
    ok = mac.length === signature.length && crypto.timingSafeEqual(mac, signature);
  } else {
    const jwk = (input.jwks.keys || []).find((k) => k.kid === header.kid);
    if (!jwk) return { ok: false, header, error: 'no published key has kid ' + header.kid };
    if (jwk.alg !== header.alg) return { ok: false, header, error: 'alg differs from the key' };
    const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
    if (header.alg === 'ES256') {
      ok = crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    } else if (header.alg === 'EdDSA') {
      ok = crypto.verify(null, data, key, signature);
    } else {
      return { ok: false, header, error: 'unexpected alg ' + header.alg };
    }
  }
  return { ok, header, payload, error: ok ? '' : 'bad signature' };
}

for (const jwt of input.jwts) {
  let result;
  try {
    result = verify(jwt);
  } catch (err) {
    result = { ok: false, error: String(err) };
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}
