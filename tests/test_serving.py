"""The serving layer's faults, against real servers: a missing or failing server, an unreachable
endpoint, a request timeout, a server killed mid-run, a pass killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from datatrove.data import Document
from datatrove.pipeline.inference.types import InferenceError

from pipelines.synthetic.generation import failure
from pipelines.synthetic.inference import LakeCheckpointManager, RequestPolicy, pass_results, run_pass
from pipelines.synthetic.serving import Endpoint, ServerConfig, ServerError, served


def ask(text: str, max_tokens: int = 24):
    async def rollout(document: Document, generate) -> dict:  # noqa: ANN001
        try:
            answer = await generate(
                {"messages": [{"role": "user", "content": document.text}], "max_tokens": max_tokens, "temperature": 0}
            )
        except InferenceError as e:
            return failure(e)
        return {"text": answer.text, "finish_reason": answer.finish_reason}

    return rollout


def items(n: int) -> list[Document]:
    return [Document(text=f"Name an animal that starts with the letter {chr(65 + i % 26)}.", id=f"item-{i}") for i in range(n)]


def test_a_missing_server_interpreter_is_one_line(tmp_path):
    config = ServerConfig(model=str(tmp_path), python=str(tmp_path / "no-venv" / "bin" / "python"))
    with pytest.raises(ServerError, match="no-venv/bin/python not found"):
        with served(config, str(tmp_path / "server.log")):
            pass


def test_a_server_that_fails_to_start_names_its_log(tmp_path, generation_model):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"architectures": ["NoSuchModel"], "model_type": "nope"}')
    log = tmp_path / "server.log"
    with pytest.raises(ServerError, match=f"exited with code .* before it was ready; see {log}"):
        with served(ServerConfig(model=str(broken)), str(log)) as endpoint:
            endpoint.ensure_up()  # the first pass starts it
    assert log.stat().st_size > 0  # the server's own account of why


def test_an_unreachable_endpoint_names_the_url(tmp_path):
    with pytest.raises(ServerError, match="no OpenAI-compatible server reachable at http://127.0.0.1:9"):
        with served(ServerConfig(kind="endpoint", url="http://127.0.0.1:9"), ""):
            pass


def test_an_endpoint_is_probed_and_its_model_found(generation_server):
    with served(ServerConfig(kind="endpoint", url=generation_server.url), "") as endpoint:
        assert endpoint.model == generation_server.model and endpoint.kind == "endpoint"


def test_a_request_that_times_out_is_retried_then_set_aside(tmp_path, generation_server):
    policy = RequestPolicy(timeout_s=0.2, retries=1, backoff_s=0.1)
    result = run_pass(generation_server, policy, items(2), ask("", max_tokens=400), str(tmp_path / "work"))
    answers = pass_results(str(tmp_path / "work"))
    assert result.failed_requests == 2
    assert {a["reason"] for a in answers.values()} == {"request_failed"}
    assert all("timed out after 0.2 s" in a["detail"] and "2 attempts" in a["detail"] for a in answers.values())


RESUMABLE_PASS = """
import sys
from pipelines.synthetic.serving import Endpoint
from pipelines.synthetic.inference import RequestPolicy, run_pass
sys.path.insert(0, {tests!r})
from test_serving import ask, items
endpoint = Endpoint({url!r}, {model!r}, "vllm")
done = run_pass(endpoint, RequestPolicy(concurrency=2), items(24), ask("", 24), {work!r}, records_per_chunk=4)
print("REQUESTS", done.requests)
"""


def test_a_pass_killed_midway_resumes_with_nothing_lost_or_doubled(tmp_path, generation_server):
    work = str(tmp_path / "work")
    script = RESUMABLE_PASS.format(
        tests=os.path.dirname(__file__), url=generation_server.url, model=generation_server.model, work=work
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    first = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(pass_results(work)) < 8:  # two chunks of four written
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = pass_results(work)
    assert 8 <= len(before) < 24
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:]
    after = pass_results(work)
    assert sorted(after) == sorted(d.id for d in items(24))
    assert all(after[k] == v for k, v in before.items())  # what was done is kept, not redone
    redone = int(second.stdout.split("REQUESTS")[1])
    assert redone <= 24 - len(before)  # only what was missing was asked again
    lines = [
        json.loads(line) for f in sorted((tmp_path / "work" / "output").glob("*.jsonl")) for line in f.read_text().splitlines()
    ]
    assert len(lines) == 24  # nothing written twice


def test_a_chunk_is_recorded_finished_before_its_checkpoint_is_removed(tmp_path, monkeypatch):
    """datatrove removed a finished chunk's checkpoint before recording the chunk finished: a kill
    in between (seen in CI) made the next run ask the whole chunk again."""
    import asyncio

    from datatrove.pipeline.writers.jsonl import JsonlWriter

    checkpoints = str(tmp_path / "checkpoints")
    writer = JsonlWriter(str(tmp_path / "output"), output_filename="${rank}_chunk_${chunk_index}.jsonl", compression=None)
    remove = os.remove

    def removed_then_killed(path: str) -> None:
        remove(path)
        raise KeyboardInterrupt(f"killed just after removing {path}")

    async def finish_chunk_zero() -> None:
        manager = LakeCheckpointManager(checkpoints, records_per_chunk=2)
        with writer:
            for document in items(2):
                document.metadata["result"] = [{"text": "ok"}]
                await manager.write_document(document, 0, 0, writer)

    monkeypatch.setattr(os, "remove", removed_then_killed)
    with pytest.raises(KeyboardInterrupt, match="chunk_00000.jsonl"):
        asyncio.run(finish_chunk_zero())
    monkeypatch.undo()

    async def resume() -> tuple[int, set[str]]:
        with writer:
            return await LakeCheckpointManager(checkpoints, records_per_chunk=2).parse_existing_checkpoints(0, writer)

    assert asyncio.run(resume()) == (2, set())  # chunk 0 is done: skipped, not asked again
    assert (tmp_path / "checkpoints" / "last_chunk" / "00000.txt").read_text() == "0"
    assert len(pass_results(str(tmp_path))) == 2


@pytest.mark.slow
def test_a_server_killed_mid_run_is_restarted_and_the_run_completes(tmp_path, generation_model):
    """A server of its own (the shared one serves other tests) is SIGKILLed, its whole process group,
    when the first answer is in and others are in flight: the watcher restarts it, the refused requests
    wait for it and are retried, and every item gets its answer."""
    with served(ServerConfig(model=generation_model, max_model_len=2048), str(tmp_path / "server.log")) as endpoint:
        endpoint.ensure_up()
        server = endpoint.server

        def kill_at_first_answer(done: int) -> None:  # not on a timer: a quick machine finished all 12 before it
            if done == 1:
                os.killpg(server.process.pid, signal.SIGKILL)

        policy = RequestPolicy(concurrency=4)
        result = run_pass(endpoint, policy, items(12), ask("", 64), str(tmp_path / "work"), progress=kill_at_first_answer)
        assert server.restarts == 1 and server.is_alive()
        assert httpx.get(f"{endpoint.url}/health").status_code == 200
    answers = pass_results(str(tmp_path / "work"))
    assert len(answers) == 12 and all("text" in a for a in answers.values()), answers
    assert result.requests >= 12


def test_requests_to_a_server_that_is_gone_for_good_stop_the_run_at_once(tmp_path, generation_model):
    """Restarts spent (none allowed here): the refused requests do not wait out the restart window, the
    pass stops with one line naming the log (a rerun continues), and nothing is set aside as failed."""
    config = ServerConfig(model=generation_model, max_model_len=2048, restarts=0)
    log = tmp_path / "server.log"
    with served(config, str(log)) as endpoint:
        endpoint.ensure_up()
        threading.Timer(2.0, os.killpg, (endpoint.server.process.pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(ServerError, match=f"stopped answering .*server log: {log}"):
            run_pass(
                endpoint, RequestPolicy(concurrency=2, retries=2, backoff_s=0.1), items(12), ask("", 64), str(tmp_path / "w")
            )
        assert time.monotonic() - started < 60
        assert all("text" in a for a in pass_results(str(tmp_path / "w")).values())  # what was answered, nothing failed
        with pytest.raises(ServerError, match=f"died and could not be restarted; see {log}"):
            run_pass(endpoint, RequestPolicy(), items(12), ask("", 64), str(tmp_path / "w"))


def test_the_endpoint_never_logs_its_api_key(tmp_path, generation_server, monkeypatch, capsys):
    monkeypatch.setenv("LMFORGE_TEST_KEY", "sk-secret-123")
    with served(ServerConfig(kind="endpoint", url=generation_server.url, api_key_env="LMFORGE_TEST_KEY"), "") as endpoint:
        assert "sk-secret-123" not in repr(endpoint)
        run_pass(endpoint, RequestPolicy(), items(1), ask("", 8), str(tmp_path / "work"))
    captured = capsys.readouterr()
    assert "sk-secret-123" not in captured.out + captured.err
    assert isinstance(Endpoint("u", "m", "endpoint", "k").headers()["Authorization"], str)


def test_the_transformers_fallback_serves_the_same_path(tmp_path, generation_model):
    """`transformers serve` from the server's venv, started, asked and stopped as vLLM is."""
    config = ServerConfig(kind="transformers", model=generation_model, start_timeout_s=600)
    with served(config, str(tmp_path / "server.log")) as endpoint:
        result = run_pass(endpoint, RequestPolicy(concurrency=2, timeout_s=300), items(2), ask("", 8), str(tmp_path / "work"))
        assert endpoint.kind == "transformers" and endpoint.server.is_alive()
    answers = pass_results(str(tmp_path / "work"))
    assert result.requests == 2 and all(a.get("text") for a in answers.values()), answers
    assert not endpoint.server.is_alive()  # stopped with the flow run
