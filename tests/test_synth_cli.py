"""`lmforge synth …` as a user runs it, against the session's real vLLM server (as an endpoint), and the
flow's managed server on the failures a user meets first: one line, the log or URL named."""

from __future__ import annotations

import json

from builders import documents_lake
from test_console import lmforge


def test_synth_commands_fill_the_lake_views_and_stats(tmp_path, generation_server, prefect_harness):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 4})
    where = ["--lake", lake.root, "--server", "endpoint", "--url", generation_server.url]
    wrap = lmforge("synth", "wrap", *where, "--style", "easy", "--max-documents", "2", "--max-tokens", "96")
    assert wrap.returncode == 0, wrap.stdout
    assert "synth wrap" in wrap.stdout and "━" in wrap.stdout  # its progress bar
    assert "synthetic/wrap" in wrap.stdout and "tok/s" in wrap.stdout and "Traceback" not in wrap.stdout

    instruct = lmforge(
        "synth", "self-instruct", *where, "--target", "2", "--batch", "4", "--max-rounds", "1", "--max-tokens", "160"
    )
    assert instruct.returncode == 0, instruct.stdout
    prefs = lmforge("synth", "preferences", *where, "--max-prompts", "2", "--margin", "1", "--max-tokens", "64")
    # Self-Instruct may accept nothing in one round from a 135M model; then preferences says so in one line
    assert prefs.returncode == 0 or "holds no instructions" in prefs.stdout, prefs.stdout
    mix = lmforge("synth", "mix", "--lake", lake.root)
    assert mix.returncode == 0 and "real" in mix.stdout, mix.stdout

    stats = lmforge("stats", "--lake", lake.root)
    assert "synthetic data" in stats.stdout and "pretrain_mix" in stats.stdout, stats.stdout
    rows = json.loads(lmforge("query", "SELECT count(*) AS n FROM wrap", "--lake", lake.root, "--format", "json").stdout)
    assert rows[0]["n"] >= 0
    again = lmforge("synth", "wrap", *where, "--style", "easy", "--max-documents", "2", "--max-tokens", "96")
    assert again.returncode == 0 and "→ synthetic/wrap: already done: nothing to generate" in again.stdout, again.stdout


def test_a_broken_seed_file_is_one_line_naming_the_line(tmp_path, prefect_harness):
    seeds = tmp_path / "seeds.jsonl"
    ok = {"id": "a", "name": "b", "instruction": "Hi", "instances": [{"input": "", "output": "Hi"}], "is_classification": False}
    seeds.write_text(json.dumps(ok) + "\n{not json\n")
    result = lmforge("synth", "self-instruct", "--lake", str(tmp_path / "lake"), "--seeds", str(seeds))
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert f"{seeds}:2: not valid JSON" in result.stdout, result.stdout


def test_an_unreachable_endpoint_is_one_line_naming_the_url(tmp_path, prefect_harness):
    result = lmforge("synth", "wrap", "--lake", str(tmp_path / "lake"), "--server", "endpoint", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert "no OpenAI-compatible server reachable at http://127.0.0.1:9" in result.stdout


def test_a_missing_server_install_is_one_line(tmp_path, prefect_harness):
    documents_lake(tmp_path / "lake", {"eng_Latn": 1})
    result = lmforge("synth", "wrap", "--lake", str(tmp_path / "lake"), "--server-python", str(tmp_path / "nowhere" / "python"))
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert "nowhere/python not found" in result.stdout, result.stdout
