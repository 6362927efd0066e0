"""The scale-out benchmark's identical-output check on a small session: one streams worker and one sink,
then two of each, on topics and a database of their own. Every output record is the same whatever N is
(risk inputs included: the risk agent applies them in event-time order, streams.riskorder), and every table
holds exactly the distinct records of its topic."""

from __future__ import annotations

from pathlib import Path

from benchmarks.scaleout_bench import Shape, identical, run
from kafkaio.registry import SchemaRegistry
from scalp.settings import AppSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
from schemas.topics import FEATURES, RISK_DAY, SIGNALS


def test_one_and_two_workers_give_the_same_outputs_and_tables_equal_topics(
    services: AppSettings, tmp_path: Path
) -> None:
    shape = Shape("2026-11-20", Shape.market(12), "10:00", "10:02", bursts=1, speed=None)
    results = run(
        services.kafka,
        lambda kafka: AvroSerde(SchemaRegistry(services.registry), kafka, catalog()),
        catalog(),
        services.database.dsn,
        shape,
        [1, 2],
        tmp_path,
        report=lambda _line: None,
    )
    one, two = results
    assert one.events == two.events > 50_000
    assert one.digests[FEATURES][0] > 1000
    assert one.digests[SIGNALS][0] > 0
    assert one.digests[RISK_DAY][0] > 0
    assert identical(results) == {}  # features, signals, risk decisions, order intents and risk_day
    assert len(one.stamps) == 1  # every output names the one commit that computed it
    assert one.stamps == two.stamps
    assert one.differences == {}
    assert two.differences == {}
    for result in results:
        assert result.end_lag == {"streams": 0, "sink": 0, "ingest": 0}
        assert result.cpu["streams"] > 0
        assert result.venue["connections"] >= 1
        assert result.venue["unrepaired"] == 0
        assert result.not_applied["late"] == 0  # the workers export the reason even when it is 0
