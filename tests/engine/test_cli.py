import json
import os
import subprocess
import sys
from pathlib import Path

TAPFL = [sys.executable, "-c", "from tap_engine.cli import main; main()"]


def tapfl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process, with ``env`` added to this one's environment."""
    return subprocess.run(
        [*TAPFL, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


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
        "post_iterations=2",
        "--quiet",
        "-o",
        str(out),
        TAPFL_CACHE_DIR=str(tmp_path / "cache"),  # the default of --cache-dir
    )
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "cache" / "data").glob("*.pt"))
    config = json.loads((out / "config.json").read_text())
    assert config["rounds"] == 2 and config["preset"] == "demo"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    evals = [e for e in events if e["type"] == "evaluation"]
    assert {e["client"] for e in evals} == set(range(len(config["scenario"]["clients"])))
    assert {"round", "client", "task", "model", "split", "metric", "value"} <= set(evals[0])

    # Two folders side by side: the final model's values, family means, chance for VQA.
    table = tapfl("results", str(out), str(out), "--split", "pooled", "--distillation")
    assert table.returncode == 0, table.stderr
    results, distillation = table.stdout.strip().split("\n\n")
    assert "| tap | text_generation |" in distillation  # the student's task loss and λ·KD
    header, _rule, *rows = results.splitlines()
    assert header.split(" | ")[-3:] == ["tap", "tap", "constant |"]
    final = {
        (e["client"], e["task"], e["metric"]): e["value"]
        for e in evals
        if (e["stage"], e["model"], e["split"]) == ("post", "final", "pooled")
    }
    split_rows = [[cell.strip() for cell in r.split("|")[1:-1]] for r in rows]
    cells = {tuple(r[1:4]): r[4:] for r in split_rows}
    value = final[(4, "shapes_vqa", "chrf")]
    assert cells[("4", "shapes_vqa", "chrf")][:2] == [f"{value:.4g}"] * 2
    assert cells[("4", "shapes_vqa", "chrf")][2] != ""  # the constant answer's chrF
    assert cells[("0", "digits_image_classification", "accuracy")][2] == ""
    assert ("all", "mean", "mse") in cells


def test_results_of_a_folder_without_events_fail_naming_it(tmp_path: Path):
    proc = tapfl("results", str(tmp_path))
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr


def test_invalid_override_exits_2_naming_the_field(tmp_path: Path):
    proc = tapfl("run", "--set", "rounds=0", "-o", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "rounds" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_presets_lists_and_shows_resolved_config():
    listing = tapfl("presets")
    assert listing.returncode == 0 and "demo" in listing.stdout
    shown = tapfl("presets", "show", "demo", "--set", "seed=5")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["seed"] == 5


def test_engine_commands_do_not_import_the_services_and_help_still_lists_them():
    probe = (
        "import sys\nfrom tap_engine.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('SERVICES', 'backend.cli' in sys.modules)"
    )
    engine = subprocess.run(
        [sys.executable, "-c", probe, "presets"], capture_output=True, text=True, timeout=300
    )
    assert "SERVICES False" in engine.stdout, engine.stderr
    helped = tapfl("--help")
    assert helped.returncode == 0 and " up " in helped.stdout and " run " in helped.stdout
