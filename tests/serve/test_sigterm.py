"""`specsel serve` as a process: SIGTERM lets the running request finish and saves the policy's
state; a restarted server restores it (and says how many requests it learnt from)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from server_fixture import free_port, word_tokenizer

from conftest import target_model

POOL = """
from drafters import NgramDrafter

def build_pool(target):
    return {"ngram": NgramDrafter()}
"""


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_target")
    model = target_model("llama")
    model.generation_config.eos_token_id = 1
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    (folder / "pool.py").write_text(POOL)
    return folder


def launch(target_dir, state, port):
    cmd = [sys.executable, "-m", "specsel", "serve", "--target", str(target_dir), "--pool",
           str(target_dir / "pool.py"), "--gammas", "1,3", "--port", str(port), "--state", str(state),
           "--threads", "1", "--drain", "20"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"specsel serve exited: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("specsel serve did not come up")


def test_sigterm_finishes_the_running_request_saves_and_a_restart_restores(target_dir, tmp_path):
    state, port = tmp_path / "state.json", free_port()
    proc = launch(target_dir, state, port)
    url = f"http://127.0.0.1:{port}/v1/completions"
    httpx.post(url, json={"model": "m", "prompt": [5, 6, 7, 5, 6], "max_tokens": 8}, timeout=60).raise_for_status()
    result = {}

    def long_request():
        with httpx.stream("POST", url, json={"model": "m", "prompt": [9, 10, 11], "max_tokens": 200, "stream": True},
                          timeout=60) as r:
            result["lines"] = [ln for ln in r.iter_lines() if ln.startswith("data:")]

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(0.5)                                      # the request is running
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert result["lines"][-1] == "data: [DONE]"
    last = json.loads(result["lines"][-2][len("data: "):])
    assert last["choices"][0]["finish_reason"] in ("stop", "length")     # it finished, it was not cut
    saved = json.loads(state.read_text())
    assert saved["queries"] == 2 and saved["policy"] == "hedgespec"

    proc = launch(target_dir, state, port)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "2 requests learnt from before" in err


def test_a_state_of_another_policy_stops_the_start_in_one_line(target_dir, tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"format": "specsel-serve-state/1", "target": str(target_dir), "pool": ["ngram"],
                                 "policy": "ucbspec", "seed": 0, "queries": 1, "requests": []}))
    out = subprocess.run([sys.executable, "-m", "specsel", "serve", "--target", str(target_dir), "--pool",
                          str(target_dir / "pool.py"), "--state", str(state), "--port", str(free_port())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("specsel serve: error:") or "error:" in out.stderr
    assert "written for policy 'ucbspec'" in out.stderr and "Traceback" not in out.stderr


def test_a_port_in_use_stops_the_start_in_one_line(target_dir):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "specsel", "serve", "--target", str(target_dir), "--pool",
                              str(target_dir / "pool.py"), "--port", str(port)],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"could not listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
