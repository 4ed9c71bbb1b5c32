import json
import subprocess
import sys
from pathlib import Path

TAPFL = [sys.executable, "-c", "from tap_engine.cli import main; main()"]


def tapfl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TAPFL, *args], capture_output=True, text=True, timeout=300)


def test_run_writes_resolved_config_and_event_lines(tmp_path: Path):
    out = tmp_path / "run"
    proc = tapfl(
        "run",
        "--preset",
        "demo",
        "--set",
        "rounds=2",
        "--set",
        "local_steps=3",
        "--set",
        "post_steps=2",
        "--quiet",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["rounds"] == 2 and config["preset"] == "demo"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    evals = [e for e in events if e["type"] == "evaluation"]
    assert {e["client"] for e in evals} == set(range(len(config["scenario"]["clients"])))
    assert {"round", "client", "task", "model", "split", "metric", "value"} <= set(evals[0])


def test_invalid_override_exits_2_naming_the_field(tmp_path: Path):
    proc = tapfl("run", "--set", "rounds=0", "-o", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "rounds" in proc.stderr and "greater than 0" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_presets_lists_and_shows_resolved_config():
    listing = tapfl("presets")
    assert listing.returncode == 0 and "demo" in listing.stdout
    shown = tapfl("presets", "show", "demo", "--set", "seed=5")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["seed"] == 5
