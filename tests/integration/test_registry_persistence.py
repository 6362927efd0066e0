"""Schema ids survive a registry restart (SQL storage on PostgreSQL), so old messages stay decodable."""

from __future__ import annotations

import json
import uuid

import pytest

from kafkaio.registry import SchemaRegistry
from scalp.settings import AppSettings


@pytest.mark.exclusive  # restarts the shared registry
def test_schema_id_is_stable_across_restart(local_stack, services: AppSettings) -> None:  # type: ignore[no-untyped-def]
    registry = SchemaRegistry(services.registry)
    subject = f"persist_{uuid.uuid4().hex[:8]}-value"
    schema = {
        "type": "record",
        "name": "P",
        "namespace": "scalp.v1.test",
        "fields": [{"name": "x", "type": "long"}, {"name": subject.split("-")[0], "type": "string"}],
    }
    schema_id = registry.register(subject, json.dumps(schema))
    before = registry.schema_str(schema_id)

    old_pid = local_stack.registry.pid()
    assert local_stack.registry.stop()
    assert local_stack.registry.pid() is None
    assert local_stack.registry.start()
    assert local_stack.registry.pid() != old_pid

    after = SchemaRegistry(services.registry)
    assert json.loads(after.schema_str(schema_id)) == json.loads(before)
    assert after.latest_id(subject) == schema_id
    assert after.register(subject, json.dumps(schema)) == schema_id  # same content -> same id
