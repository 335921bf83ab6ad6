"""VectorProducer refuses payload keys that are not JSON paths before anything is published."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from producers import VectorProducer
from schemas.codec import decode
from schemas.errors import InvalidPath, ValidationError
from tests.helpers import read_topic


def test_invalid_paths_are_refused_before_publishing(settings: Settings) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("c", 2)
        with pytest.raises(InvalidPath, match=r"^key: invalid payload key 'nest\[0': "):
            p.set_payload("c", [1], {"a": 1}, key="nest[0")
        with pytest.raises(InvalidPath, match=r"^keys\[1\]: invalid payload key '\"x\.y': "):
            p.delete_payload_keys("c", [1], ["a[].b", '"x.y'])
        with pytest.raises(InvalidPath, match=r"^keys\[0\]: invalid payload key '': the path is empty"):
            p.delete_payload_keys("c", [1], [""])
        with pytest.raises(ValidationError, match=r"^keys: expected a non-empty list"):
            p.delete_payload_keys("c", [1], [])
        p.set_payload("c", [1], {"a": 1}, key="nest[0]")
        p.delete_payload_keys("c", [1], ["a[].b", '"x.y"'])
    events = [decode(r.value) for r in read_topic(settings.kafka_bootstrap, settings.topic, expected=3)]
    assert [type(e).__name__ for e in events] == ["CollectionCreated", "PayloadSet", "PayloadKeysDeleted"]
    assert [e.meta.schema_version for e in events[1:]] == [2, 2]
