from __future__ import annotations

from pathlib import Path

import pytest

from kafkaio.errors import ConfigError
from sinks.migrate import MIGRATIONS_DIR, discover


def test_flavours_pick_their_files_in_order() -> None:
    plain = [m.version for m in discover("plain")]
    timescale = [m.version for m in discover("timescale")]
    assert plain == sorted(plain)
    assert "0002.plain" in plain
    assert "0002.timescale" not in plain
    assert "0002.timescale" in timescale
    assert "0002.plain" not in timescale
    assert plain[0] == timescale[0] == "0001"


def test_partition_template_renders_per_flavour() -> None:
    first = discover("plain")[0]
    assert "{{" not in first.sql("plain")
    assert first.sql("plain").count(") PARTITION BY RANGE (ts);") == 13
    assert ") PARTITION BY" not in first.sql("timescale")
    assert first.checksum("plain") != first.checksum("timescale")


def test_unique_keys_include_ts() -> None:
    sql = (MIGRATIONS_DIR / "0001_core_tables.sql").read_text()
    for line in sql.splitlines():
        if "UNIQUE (" in line and "CONSTRAINT" in line:
            assert "ts" in line.split("UNIQUE (")[1], line


def test_bad_file_name_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match="file names"):
        discover("plain", tmp_path)
