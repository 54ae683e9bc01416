#!/usr/bin/env bash
# Writes the seed corpus of the `decode` fuzz target into fuzz/corpus/decode/ (git-ignored,
# so this script is what is kept): representative requests taken from the tests
# (tests/it/codes.rs, tests/it/paths.rs, tests/decode_props.rs, src/request.rs): every
# identifier path, the seed page's example, every step 2-4 refusal, secrets to leak.
#
# An input is one selector byte, then the body (see fuzz/src/input.rs). Selector modulo 8:
#   0 no content_type            4 text/plain
#   1 application/json           5 "" (empty)
#   2 application/json; charset=utf-8         6 application/json; charset=iso-8859-1
#   3 Application/JSON;charset="UTF-8"        7 free: content type up to '\n', then the body
#
# Usage: fuzz/seed-corpus.sh [directory]   (default: fuzz/corpus/decode next to this script)
set -euo pipefail

dir="${1:-$(cd "$(dirname "$0")" && pwd)/corpus/decode}"
mkdir -p "$dir"

# seed NAME SELECTOR BODY
seed() {
    printf "\\x$(printf '%02x' "$2")" >"$dir/$1"
    printf '%s' "$3" >>"$dir/$1"
}

# seed_free NAME CONTENT_TYPE BODY
seed_free() {
    printf '\x07%s\n%s' "$2" "$3" >"$dir/$1"
}

# repeat TEXT COUNT
repeat() {
    local out=""
    for ((i = 0; i < $2; i++)); do out+="$1"; done
    printf '%s' "$out"
}

T=35108255345D4F98ABFD7810A08E432F
JWT=eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE0NzgyNTE5MzF9.FgRjJ6vuhRTP_0A1yFSxaRcaIugkJK5GyHbt1rRGxA0
ID=75E3E50139F24DC3A6C9AA0C026D0292
HYPHENATED=75e3e501-39f2-4dc3-a6c9-aa0c026d0292
SEED_EXAMPLE="{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S0000000329\"}}"

# The seed page's example, under every fixed content type.
for selector in 0 1 2 3 4 5 6; do
    seed "seed-example-ct$selector" "$selector" "$SEED_EXAMPLE"
done
seed seed-example-jwt-token 0 "{\"token\":\"$JWT\",\"subscription_identifier\":{\"number\":\"S0000000329\"}}"

# Every identifier path (tests/it/paths.rs).
seed ok-subscription-by-id 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":\"$ID\"}}"
seed ok-subscription-by-hyphenated-id 1 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":\"$HYPHENATED\"}}"
seed ok-item-by-serial-number 0 "{\"token\":\"$T\",\"installed_item_identifier\":{\"serial_number\":\"SN-0001\"}}"
seed ok-item-by-alternative-code 0 "{\"token\":\"$T\",\"installed_item_identifier\":{\"alternative_code\":\"STB-0001\"}}"
seed ok-item-by-id 2 "{\"token\":\"$T\",\"installed_item_identifier\":{\"id\":\"$ID\",\"serial_number\":null}}"
seed ok-access-token-by-code 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"authentication_code\":\"AC-0001\"}}"
seed ok-access-token-by-pass-code 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"identifier\":\"demo-user-1\",\"pass_code\":\"1234\",\"authentication_code\":null}}"
seed ok-medium-by-code 0 "{\"token\":\"$T\",\"customer_identification_medium_identifier\":{\"authentication_code\":\"CIM-AC-0001\"}}"
seed ok-medium-by-pass-code 3 "{\"token\":\"$T\",\"customer_identification_medium_identifier\":{\"identifier\":\"demo-card-1\",\"pass_code\":\"5678\"}}"
seed ok-type-by-name 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"authentication_code\":\"AC-0002\"},\"subscription_type_identifier\":{\"name\":\"Tucano Premium\"}}"
seed ok-type-by-alternative-code 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"identifier\":\"demo-user-2\",\"pass_code\":\"2468\"},\"subscription_type_identifier\":{\"alternative_code\":\"TUCANO-BASIC\",\"id\":null}}"
seed ok-type-by-id 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"authentication_code\":\"AC-0002\"},\"subscription_type_identifier\":{\"id\":\"$HYPHENATED\"}}"
seed ok-null-fields-are-absent 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S0000000329\"},\"installed_item_identifier\":null,\"subscription_type_identifier\":null}"
seed ok-text-at-limit 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"$(repeat é 256)\"}}"
seed ok-escaped-and-spaced 0 " { \"token\" : \"\\u0033\\/5\\n\" , \"subscription_identifier\" : { \"number\" : \"S\\u00e9\\ud83d\\ude00\" } } "

# Step 2: content type, UTF-8, JSON, object (tests/it/codes.rs, src/request.rs).
seed_free ct-quoted-charset 'application/json; charset="utf-8"' "$SEED_EXAMPLE"
seed_free ct-trailing-semicolon 'application/json;' "$SEED_EXAMPLE"
seed_free ct-space-inside 'application/ json' "$SEED_EXAMPLE"
seed_free ct-other-parameter 'application/json; version=2' "$SEED_EXAMPLE"
seed_free ct-jsonx 'application/jsonx' "$SEED_EXAMPLE"
seed_free ct-utf16 'APPLICATION/JSON ; CHARSET = UTF-16' "$SEED_EXAMPLE"
seed not-utf8 0 $'\xff\xfe{}'
seed not-json 0 '{token'
seed empty-body 0 ''
seed not-an-object 0 '[1,2]'
seed null-body 1 'null'
seed string-body 0 '"S0000000329"'
seed two-objects 0 '{} {}'
seed deep-nesting 0 "{\"token\":$(repeat '[' 200)$(repeat ']' 200),\"subscription_identifier\":{\"number\":\"S1\"}}"
seed huge-number 0 "{\"token\":1e400,\"subscription_identifier\":{\"number\":\"S1\"}}"

# Step 3 (tests/it/codes.rs, src/request.rs).
seed missing-identifier 0 "{\"token\":\"$T\"}"
seed only-null-identifiers 0 "{\"token\":\"$T\",\"subscription_identifier\":null,\"subscription_type_identifier\":{}}"
seed empty-object 0 '{}'
seed multiple-identifiers 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S0000000329\"},\"installed_item_identifier\":{\"serial_number\":\"SN-0001\"}}"
seed multiple-ignores-inside 0 '{"token":5,"subscription_identifier":1,"installed_item_identifier":"x"}'
seed multiple-wins-over-type 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S1\"},\"customer_identification_medium_identifier\":{\"authentication_code\":\"C\"},\"subscription_type_identifier\":{\"name\":\"Gold\"}}"
seed type-not-applicable 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S0000000329\"},\"subscription_type_identifier\":{\"name\":\"Tucano Basic\"}}"
seed type-not-applicable-garbage 0 '{"installed_item_identifier":1,"subscription_type_identifier":[]}'

# Step 4: what the schema rejects (tests/it/codes.rs, tests/decode_props.rs, src/schema.rs).
seed unknown-field 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S0000000329\"},\"extra\":1}"
seed unknown-null-field 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"S\",\"x\":null}}"
seed missing-token 0 '{"subscription_identifier":{"number":"S0000000329"}}'
seed null-token 0 '{"token":null,"subscription_identifier":{"number":"S0000000329"}}'
seed empty-token 0 '{"token":"","subscription_identifier":{"number":"S0000000329"}}'
seed token-over-limit 0 "{\"token\":\"$(repeat A 4097)\",\"subscription_identifier\":{\"number\":\"S1\"}}"
seed bad-id 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":\"not-an-id\"}}"
seed braced-id 0 "{\"token\":\"$T\",\"installed_item_identifier\":{\"id\":\"{$HYPHENATED}\"}}"
seed urn-id 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":\"urn:uuid:$HYPHENATED\"}}"
seed short-id 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":\"75E3E50139F24DC3A6C9AA0C026D029\"}}"
seed numeric-id 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":12345,\"number\":\"S1\"}}"
seed two-fields 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"id\":\"$ID\",\"number\":\"S1\"}}"
seed no-field 0 "{\"token\":\"$T\",\"installed_item_identifier\":{}}"
seed identifier-not-object 0 "{\"token\":\"$T\",\"subscription_identifier\":\"S0000000329\"}"
seed empty-string 0 "{\"token\":\"$T\",\"installed_item_identifier\":{\"serial_number\":\"\"}}"
seed text-over-limit 0 "{\"token\":\"$T\",\"subscription_identifier\":{\"number\":\"$(repeat é 257)\"}}"
seed identifier-without-pass-code 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"identifier\":\"demo-user-1\"}}"
seed bad-type 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"authentication_code\":\"AC-0001\"},\"subscription_type_identifier\":{\"name\":\"\",\"id\":\"x\"}}"

# Secrets that a message must never echo (src/request.rs, src/schema.rs, decode_props).
seed secret-pass-code-alone 0 '{"token":"TOK-SECRET","access_token_identifier":{"pass_code":"PASS-SECRET"}}'
seed secret-code-and-pass-code 0 '{"token":"TOK-SECRET-1","customer_identification_medium_identifier":{"authentication_code":"AC-SECRET-1","pass_code":"PASS-SECRET-1"}}'
seed secret-mistyped-pass-code 0 '{"token":"TOK-SECRET-2","access_token_identifier":{"identifier":"A1","pass_code":1234,"authentication_code":"AC-SECRET-2"}}'
seed secret-token-in-array 0 '{"token":["TOK-SECRET-IN-ARRAY"],"subscription_identifier":{"number":"S"}}'
seed secret-nested-token 0 '{"token":"TOK-SECRET-3","subscription_identifier":{"number":"S","token":"TOK-SECRET-NESTED"}}'
seed secret-token-equals-id 0 "{\"token\":\"xyz-not-an-id\",\"subscription_identifier\":{\"id\":\"xyz-not-an-id\"}}"
seed secret-long-pass-code 0 "{\"token\":\"$T\",\"access_token_identifier\":{\"identifier\":\"A1\",\"pass_code\":\"PASS-SECRET-$(repeat 9 300)\"}}"
seed secret-escaped-token 0 '{"token":"TOK\"SECRET\\\n\u0001-1","installed_item_identifier":{"id":"TOK\"SECRET\\\n\u0001-1"}}'

echo "seeded $(find "$dir" -type f | wc -l) inputs in $dir"
