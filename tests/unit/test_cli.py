"""CLI exit codes, run as a user would (a subprocess of the installed entry point's module)."""

from __future__ import annotations

from pathlib import Path

from tests.cli_util import scalp


def test_help_lists_the_commands() -> None:
    proc = scalp("--help")
    assert proc.returncode == 0
    for command in ("stack", "db", "topics", "demo"):
        assert command in proc.stdout


def test_unknown_command_is_a_usage_error() -> None:
    proc = scalp("frobnicate")
    assert proc.returncode == 2


def test_malformed_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("database:\n  urll: postgresql://x\n")
    proc = scalp("--config", str(bad), "stack", "env")
    assert proc.returncode == 2
    assert "database.urll" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_wrong_type_in_env_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stack:\n  kafka_port: nineteen\n")
    proc = scalp("--config", str(cfg), "stack", "env")
    assert proc.returncode == 2
    assert "stack.kafka_port" in proc.stderr


def test_unreachable_database_exits_1_without_the_password() -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = scalp("db", "migrate", env={"DATABASE_URL": f"postgresql://scalp:topsecretpw@127.0.0.1:{port}/scalp"})
    assert proc.returncode == 1
    assert "unreachable" in proc.stderr
    assert "topsecretpw" not in proc.stderr + proc.stdout
    assert f"scalp:***@127.0.0.1:{port}" in proc.stderr


def test_stack_env_prints_exports_only(tmp_path: Path) -> None:
    proc = scalp("stack", "env", env={"SCALP_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert all(line.startswith("export ") for line in lines)
    names = {line.split()[1].split("=")[0] for line in lines}
    assert {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL"} <= names
    assert f"export SCALP_STATE_DIR={tmp_path}" in lines


def test_one_variable_moves_every_health_endpoint() -> None:
    from scalp.settings import load_settings

    settings = load_settings(env={"SCALP_HTTP_HOST": "10.1.2.3"})
    hosts = {settings.sink.http_host, settings.streams.http_host, settings.execution.http_host}
    assert hosts | {settings.polygon.http_host} == {"10.1.2.3"}
    assert load_settings(env={}).execution.http_host == "127.0.0.1"


def test_the_settings_digest_ignores_where_things_live(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from scalp.settings import load_settings

    here = load_settings(env={})
    elsewhere = load_settings(env={"SCALP_STATE_DIR": str(tmp_path), "SCALP_LOG_DIR": str(tmp_path / "logs")})
    assert here.digest() == elsewhere.digest()
    # another worker of the same deployment, or the same session through other topics and another database
    elsewhere_env = {
        "SCALP_TOPIC_PREFIX": "other_",
        "KAFKA_BOOTSTRAP_SERVERS": "10.0.0.1:9092",
        "SCALP_HTTP_HOST": "10.0.0.4",
        "DATABASE_URL": "postgresql://u@10.0.0.2/x",
        "SCHEMA_REGISTRY_URL": "http://10.0.0.3:8081",
        "SCALP_ALLOW_PLAINTEXT": "true",
    }
    deployed = load_settings(env=elsewhere_env)
    assert here.digest() == deployed.digest()
    ports = here.model_copy(update={"streams": here.streams.model_copy(update={"http_port": 9999})})
    assert here.digest() == ports.digest()
    # what shapes outputs counts
    tuned = here.model_copy(update={"streams": here.streams.model_copy(update={"merge_grace_ms": 5})})
    assert here.digest() != tuned.digest()


def test_policy_and_condition_files_next_to_scalp_config_take_precedence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from scalp_config import HERE

    (tmp_path / "trade_conditions.yaml").write_text((HERE / "trade_conditions.yaml").read_text())
    (tmp_path / "pipeline.yaml").write_text((HERE / "pipeline.yaml").read_text())
    probe = (
        "from streams.core.conditions import CONDITIONS_FILE as a; from sinks.maintain import CONDITIONS_FILE as b; "
        "from connectors.synthetic.generator import CONDITIONS_FILE as c; "
        "from streams.core.policy import POLICY_FILE as d; print(a, b, c, d)"
    )
    env = {**os.environ, "SCALP_CONFIG": str(tmp_path / "pipeline.yaml")}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out[:3] == [str(tmp_path / "trade_conditions.yaml")] * 3  # beside the settings file in use
    assert out[3] == str(HERE / "session_policies.yaml")  # none there: the packaged default
    env.pop("SCALP_CONFIG")
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out[0] == str(HERE / "trade_conditions.yaml")


def test_the_condition_table_is_a_setting_counted_by_its_content(tmp_path: Path) -> None:
    from scalp_config import HERE

    from scalp.settings import load_settings

    rules = (HERE / "trade_conditions.yaml").read_text()
    copy, changed = tmp_path / "copy.yaml", tmp_path / "changed.yaml"
    copy.write_text(rules)
    changed.write_text(rules.replace("updates_volume: false", "updates_volume: true", 1))
    assert changed.read_text() != rules
    packaged = load_settings(env={})
    assert packaged.streams.conditions_file == HERE / "trade_conditions.yaml"

    def with_table(path: Path) -> str:
        cfg = tmp_path / f"{path.stem}.pipeline.yaml"
        cfg.write_text(f"streams:\n  conditions_file: {path}\n")
        settings = load_settings(cfg, env={})
        assert settings.streams.conditions_file == path
        return settings.digest()

    assert with_table(copy) == packaged.digest()  # same rules elsewhere: same env hash
    assert with_table(changed) != packaged.digest()  # other rules: another env hash


def test_an_unreadable_condition_table_exits_2_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    broken.write_text("conditions: [1, 2\n")
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(f"streams:\n  conditions_file: {broken}\n")
    for args in (("streams",), ("db", "maintain", "--dry-run")):
        proc = scalp("--config", str(cfg), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"{broken}: not a trade-condition table" in proc.stderr


def test_times_past_int64_nanoseconds_or_before_1970_exit_2() -> None:
    from scalp.cliutil import parse_time

    assert parse_time("2262-04-11T00:00:00Z", "--to") < (1 << 63) - 1
    assert parse_time("1970-01-01T00:00:00Z", "--from") == 0
    for args in (
        ("backfill", "--symbols", "SPY", "--from", "9999-12-31", "--to", "9999-12-31T12:00:00Z"),
        ("backfill", "--symbols", "SPY", "--from", "0001-01-01", "--to", "2026-11-20"),
        ("replay", "--from", "2262-04-12", "--run-id", "r"),
        ("export", "--from", "1969-12-31T23:59:59Z"),
    ):
        proc = scalp(*args, env={"POLYGON_API_KEY": "k"})
        assert proc.returncode == 2, (args, proc.stderr)
        assert "outside 1970-01-01 .. 2262-04-11" in proc.stderr, proc.stderr
