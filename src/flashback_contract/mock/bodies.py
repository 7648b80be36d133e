"""The JSON style of the handlers' bodies: the one of every body served (web.json_text)."""

from __future__ import annotations

import json

from connexion.jsonifier import Jsonifier

# connexion's serialiser for handler results: compact, keys in the order the handlers build
# them (`success` first), never sorted; it ends each body with a newline, as json_text does.
CONTRACT_JSON = Jsonifier(json, separators=(",", ":"))
