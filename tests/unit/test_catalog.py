from __future__ import annotations

import re
from pathlib import Path

import fastavro
import pytest

from kafkaio.settings import KafkaSettings
from schemas.catalog import AVRO_DIR, Catalog, load_catalog

REPO = Path(__file__).resolve().parents[2]
CONTRACT_TOPICS = [
    "market_trades",
    "market_quotes",
    "bars_1m",
    "options_chain",
    "features",
    "signals",
    "risk_decisions",
    "order_intents",
    "orders",
    "fills",
    "trade_ledger",
    "account_snapshot",
    "risk_day",
    "ingest_gaps",
    "execution_control",
    "config_snapshots",
]


def test_catalog_has_exactly_the_contract_topics(cat: Catalog) -> None:
    assert cat.names() == CONTRACT_TOPICS
    assert sorted(p.stem for p in AVRO_DIR.glob("*.avsc")) == sorted(CONTRACT_TOPICS)


@pytest.mark.parametrize("topic", CONTRACT_TOPICS)
def test_schema_is_versioned_documented_and_parses(cat: Catalog, topic: str) -> None:
    schema = cat[topic].schema
    assert schema["namespace"] == "scalp.v1"
    assert schema.get("doc")
    fastavro.parse_schema(schema)

    def check(fields: list[dict]) -> None:  # type: ignore[type-arg]
        for field in fields:
            assert field.get("doc"), f"{topic}.{field['name']} has no doc"
            inner = field["type"]
            if isinstance(inner, dict) and inner.get("type") == "array" and isinstance(inner["items"], dict):
                check(inner["items"].get("fields", []))

    check(schema["fields"])


@pytest.mark.parametrize("topic", CONTRACT_TOPICS)
def test_event_time_is_a_nanosecond_timestamp(cat: Catalog, topic: str) -> None:
    fields = {f["name"]: f["type"] for f in cat[topic].schema["fields"]}
    ts = fields.get("ts")
    assert ts == {"type": "long", "logicalType": "timestamp-nanos"}


def test_money_uses_decimals(cat: Catalog) -> None:
    fields = {f["name"]: f["type"] for f in cat["account_snapshot"].schema["fields"]}
    for name in ("cash", "equity", "unrealized_pnl", "realized_pnl"):
        assert fields[name]["logicalType"] == "decimal"


def test_partitions_retention_and_keys(cat: Catalog) -> None:
    for spec in cat:
        assert spec.partitions >= 1
        assert spec.cleanup_policy in ("delete", "compact")
        assert spec.key in spec.field_names()
    assert cat["market_trades"].key == "symbol"
    assert cat["risk_day"].cleanup_policy == "compact"
    assert cat["market_trades"].dlq == "market_trades.dlq"


def test_unknown_topic_key_in_catalog_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "topics.yaml"
    bad.write_text(
        "defaults: {partitions: 1, retention_ms: 1, cleanup_policy: delete}\n"
        "dlq: {partitions: 1, retention_ms: 1, cleanup_policy: delete}\n"
        "topics:\n  market_trades: {key: symbol, schema: market_trades.avsc, partitons: 3}\n"
    )
    with pytest.raises(Exception, match="partitons"):
        load_catalog(bad)


def test_every_topic_has_a_table_with_every_field() -> None:
    """Each Avro field of a topic is a column of the table of the same name (ts adds ts_ns)."""
    migrations = sorted((REPO / "sinks" / "migrations").glob("*.sql"))
    sql = "\n".join(path.read_text() for path in migrations)
    cat = load_catalog()
    for spec in cat:
        match = re.search(rf"CREATE TABLE IF NOT EXISTS {spec.name} \((.*?)\n\)", sql, re.S)
        assert match, f"no table for {spec.name}"
        columns = {
            line.split()[0]
            for line in match.group(1).splitlines()
            if line.strip() and not line.strip().startswith(("CONSTRAINT", "PRIMARY", "--"))
        }
        columns |= set(re.findall(rf"ALTER TABLE {spec.name} ADD COLUMN IF NOT EXISTS (\w+)", sql))
        missing = set(spec.field_names()) - columns
        assert not missing, f"{spec.name}: columns missing for {missing}"
        assert "ts_ns" in columns


def test_a_retention_floor_raises_the_topics_retention_for_past_tapes(cat: Catalog) -> None:
    from kafkaio.admin import TopicAdmin

    def retention(kafka: KafkaSettings, name: str) -> str:
        return TopicAdmin(kafka, cat).wanted()[name][1]["retention.ms"]

    plain = KafkaSettings()
    assert retention(plain, "market_trades") == "604800000"  # the catalog's 7 days
    assert retention(KafkaSettings(min_retention_ms=-1), "market_trades") == "-1"
    assert retention(KafkaSettings(min_retention_ms=10**10), "market_trades") == str(10**10)
    assert retention(KafkaSettings(min_retention_ms=1000), "market_trades") == "604800000"  # never lowered
    assert retention(KafkaSettings(min_retention_ms=1000), "ingest_gaps") == "-1"  # kept forever stays so
