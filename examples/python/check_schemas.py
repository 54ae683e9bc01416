"""Validates a corpus of request bodies against schemas/request.schema.json with Python's
jsonschema (Draft202012Validator), for the test that checks every language reads the
published schemas the same way.

    python3 examples/python/check_schemas.py CORPUS.json

CORPUS.json is a JSON array of request bodies as JSON text; prints a JSON array of
booleans (valid or not), one per body.
"""

import json
import pathlib
import sys

from jsonschema import Draft202012Validator

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "schemas"


def main():
    schemas = {name: json.loads((SCHEMAS / f"{name}.schema.json").read_text()) for name in ("request", "reply")}
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schemas["request"])
    bodies = json.loads(pathlib.Path(sys.argv[1]).read_text())
    # json.loads keeps a lone surrogate escape as a lone surrogate, as Python strings can.
    print(json.dumps([validator.is_valid(json.loads(body)) for body in bodies]))


if __name__ == "__main__":
    main()
