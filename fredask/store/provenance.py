"""Where a features array came from: its source, a hash of it, and a description.

A features array is a function of its source: the ingested file (its hash and
the key inside it), or the model of an extraction (package, version,
checkpoint hash, layer, options).  The store records the source and its hash
(``source_id``) with the array, so writing a name again can tell "the same
features" (kept) from "other features" (refused unless overwritten), and a
resumed extraction can refuse to mix chunks of two sources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

#: Metadata keys that describe a run, not the features (left out of an extraction's source).
RUN_KEYS = (
    "command",
    "created",
    "checkpoint",
    "complete",
    "skipped",
    "source",
    "source_id",
    "model_dtype",
)


def source_id(source: Mapping[str, object]) -> str:
    """A hash of a features source (a canonical JSON of the mapping)."""
    text = json.dumps(dict(source), sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def describe_source(source: Mapping[str, object] | None) -> str:
    """A short human description of a features source, for messages."""
    if not source:
        return "an unrecorded source"
    source = dict(source)
    if source.get("kind") == "file":
        key = f", key {source['key']}" if source.get("key") else ""
        return f"file {source.get('file')} (hash {str(source.get('hash'))[:12]}{key})"
    parts = [f"model {source.get('model', '?')}"]
    for key in ("checkpoint_hash", "layer", "modal", "package_version"):
        if source.get(key) not in (None, ""):
            value = str(source[key])
            parts.append(f"{key.replace('_', ' ')} {value[:12] if 'hash' in key else value}")
    return ", ".join(parts)


def model_source(metadata: Mapping[str, object]) -> dict[str, object]:
    """The source of features an extractor (or a generator) with ``metadata`` writes."""
    return {"kind": "model", **{k: v for k, v in metadata.items() if k not in RUN_KEYS}}
