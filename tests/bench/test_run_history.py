"""`make bench` warns about a figure more than 20 % worse and keeps the last 10 runs."""

import importlib.util
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _figure(value, target, name="PL1 x"):
    return {"id": "PL1", "name": name, "value": value, "unit": "s", "target": target}


def test_it_warns_when_a_figure_is_more_than_20_percent_worse():
    run = _run_module()
    previous = {"date": "d0", "commit": "abc", "figures": [_figure(10.0, "< 10 s on 2 cores")]}
    assert run.regressions([_figure(11.9, "< 10 s on 2 cores")], previous) == []
    [line] = run.regressions([_figure(12.5, "< 10 s on 2 cores")], previous)
    assert line.startswith("WARNING regression: PL1 PL1 x: 10.0 -> 12.5") and "abc" in line


def test_it_reads_the_direction_from_the_target_and_skips_figures_without_one():
    run = _run_module()
    previous = {"figures": [_figure(1.0, "≥ 0.9", "ratio"), _figure(1.0, "report", "free")]}
    now = [_figure(0.7, "≥ 0.9", "ratio"), _figure(9.0, "report", "free")]
    [line] = run.regressions(now, previous)
    assert "ratio" in line


def test_it_keeps_the_last_ten_runs_newest_first():
    run = _run_module()
    previous = {"figures": [_figure(1.0, "< 2")], "date": "old", "machine": "m"}
    for number in range(12):
        result = {
            "date": f"d{number}",
            "commit": f"c{number}",
            "machine": "m",
            "quick": False,
            "figures": [_figure(number, "< 2")],
        }
        result["history"] = run.history_of(result, previous)
        previous = result
    assert [r["date"] for r in previous["history"]] == [f"d{n}" for n in range(11, 1, -1)]
    assert previous["history"][0]["commit"] == "c11"


def test_pl1_runs_on_sqlite_and_pl1pg_in_a_scratch_postgresql_database_it_drops(monkeypatch):
    """PL1 never writes into the database the shell points at; PL1pg gets a database of its
    own on the benchmarks' PostgreSQL server, and run_one drops it after."""
    from django.db import connection

    from tests.conftest import skip_or_fail

    run = _run_module()
    monkeypatch.setenv("DATABASE_URL", "postgres://someone@db.example/production")
    monkeypatch.setenv("FERRY_DATA_DIR", "/var/lib/ferry")
    env = run.bench_env("PL1")
    assert "DATABASE_URL" not in env and "FERRY_DATA_DIR" not in env
    if connection.vendor != "postgresql":
        skip_or_fail("PL1pg needs PostgreSQL on loopback")
    import psycopg

    settings = connection.settings_dict
    server = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/postgres"
    monkeypatch.setenv("FERRY_BENCH_DATABASE_URL", server)
    env = run.bench_env("PL1pg")
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    assert name.startswith("ferry_bench_") and "FERRY_DATA_DIR" not in env

    def databases():
        with psycopg.connect(server, autocommit=True) as conn:
            return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}

    assert name in databases()
    run._drop_scratch(env["DATABASE_URL"])
    assert name not in databases()


def test_it_warns_when_a_figure_that_was_measured_is_measured_no_more():
    run = _run_module()
    previous = {"date": "d0", "figures": [_figure(27.3, "≤ 100 ms", "W1 p95")]}
    [line] = run.regressions([_figure(float("nan"), "≤ 100 ms", "W1 p95")], previous)
    assert "27.3 -> no figure" in line
    [line] = run.regressions([_figure(None, "≤ 100 ms", "W1 p95")], previous)
    assert "no figure" in line
    assert run.regressions([_figure(30.0, "≤ 100 ms", "W1 p95")], previous) == []


def test_it_warns_when_a_benchmark_that_gave_figures_gives_none():
    run = _run_module()
    previous = {"figures": [_figure(4.0, "< 10 s", "PL1 validate+place")]}
    crashed = {"id": "PL1", "name": "PL1", "value": None, "unit": "", "target": "", "notes": "x"}
    [line] = run.regressions([crashed], previous)
    assert "4.0 -> no figure" in line
