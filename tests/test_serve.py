"""The HTTP API as a real process on 127.0.0.1, serving a real published qwen3-tiny model.

The published folder comes from the real pipeline (tests/test_publish.py's session fixtures:
data stages -> train -> eval -> publish). The default suite starts one server (with a bearer
token and a small queue) and checks every endpoint, equality with the eval engine, malformed
input, thinking refusals, auth, back-pressure, a negative schemathesis run and a real
Prometheus scraping it, and a schemathesis fuzz run. Slow tests start their own servers (504
timeouts, the SIGTERM drain, a worker that cannot load the model).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import prometheus_server as prom
from tests.serve_process import REPO_ROOT, ServerProcess, call, run_server_command, server_env

TOKEN = "lw-test-token-6Hq2Zp9Kx"  # a stand-in; never a real credential
MAX_QUEUE = 3
CONTRACT_ENV = (
    "LETTERWISE_MODEL_DIR", "LETTERWISE_DEVICE", "LETTERWISE_MAX_BATCH_SIZE",
    "LETTERWISE_BATCH_TIMEOUT_S", "LETTERWISE_MAX_QUEUE", "LETTERWISE_REQUEST_TIMEOUT_S",
    "LETTERWISE_MODE", "LETTERWISE_API_TOKEN",
)  # fmt: skip
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def model_dir(published) -> Path:
    """The folder `python -m stages.publish` wrote for a real qwen3-tiny run."""
    return published[0] / "models" / "published"


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The main server: bearer token, at most MAX_QUEUE requests in flight, batches of 8."""
    logs = tmp_path_factory.mktemp("serve-logs")
    started = ServerProcess.start(
        model_dir,
        logs,
        api_token=TOKEN,
        max_queue=MAX_QUEUE,
        max_batch_size=8,
        batch_timeout_s=0.05,
        request_timeout_s=300,
    )
    yield started
    assert started.stop() == 0, started.output()[-3000:]
    assert TOKEN not in started.output()  # the token is never logged


def post(server: ServerProcess, task: str, body: dict, token: str | None = TOKEN):
    return call(server.url, "POST", f"/v1/{task}", body, token=token)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from /metrics."""
    text = call(url, "GET", "/metrics").body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def fire(count: int, send) -> list:
    """`send(i)` from `count` threads at once; the replies in order."""
    replies: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        replies[i] = send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


GREEDY = {"decoding": "greedy"}


# ---------------------------------------------------------------- start-up, probes, docs


@pytest.mark.slow
def test_probes_while_loading_then_ready(server):
    """/healthz answered while the model loaded, /readyz and /v1/* said 503 until it was ready."""
    seen = server.seen_while_loading
    assert seen, "the server was never observed before it was ready"
    assert {entry["healthz"] for entry in seen} == {200}
    assert {entry["readyz"] for entry in seen} == {503}
    assert {entry["api"] for entry in seen} == {503}
    assert all("loading" in entry["api_error"] for entry in seen)
    ready = call(server.url, "GET", "/readyz")
    assert ready.status == 200 and ready.body["status"] == "ready"
    assert set(ready.body["workers"]) == {"spelling_0", "position_0", "count_0"}
    assert call(server.url, "GET", "/healthz").body == {"status": "ok"}


@pytest.mark.slow
def test_openapi_and_docs_describe_the_three_endpoints(server):
    spec = call(server.url, "GET", "/openapi.json").body
    for task in ("spelling", "position", "count"):
        operation = spec["paths"][f"/v1/{task}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert len(body["oneOf"]) == 2  # one question, or a batch in `items`
        assert {"401", "413", "422", "503", "504"} <= set(operation["responses"])
    docs = call(server.url, "GET", "/docs")
    assert docs.status == 200 and "swagger" in docs.body.lower()


# ---------------------------------------------------------------- answers


def adapter_revision(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(name.encode())
        digest.update((model_dir / name).read_bytes())
    return digest.hexdigest()[:12]


@pytest.mark.slow
def test_each_endpoint_answers_and_scores_itself(server, model_dir):
    from letterwise.tasks import count, position, spelling

    cases = {
        "spelling": ({"word": "Berry"}, "expected", list("berry")),
        "position": ({"word": "strawberry", "index": 3}, "expected", "r"),
        "count": ({"word": "strawberry", "letter": "R"}, "expected", 3),
    }
    parse = {
        "spelling": lambda raw: list(spelling.parse(raw) or "") or None,
        "position": position.parse,
        "count": lambda raw: None if count.parse(raw) is None else int(count.parse(raw)),
    }
    answer_field = {"spelling": "letters", "position": "letter", "count": "count"}
    in_format = {"spelling": spelling.in_format, "position": position.in_format,
                 "count": count.in_format}  # fmt: skip
    for task, (question, key, expected) in cases.items():
        reply = post(server, task, question | GREEDY)
        assert reply.status == 200, reply.body
        (result,) = reply.body["results"]
        assert result[key] == expected
        assert result["word"] == question["word"].lower()
        assert result[answer_field[task]] == parse[task](result["raw"])
        assert result["correct"] == (result[answer_field[task]] == expected)
        assert result["in_format"] == in_format[task](result["raw"])
        assert result["strategy"] == "direct"
        assert reply.body["model"] == {
            "name": "qwen3-tiny",
            "adapter_revision": adapter_revision(model_dir),
            "mode": "non-thinking",
        }
        assert reply.body["sampling"]["decoding"] == "greedy"
        timings = reply.body["timings"]
        assert timings["generation_s"] > 0 and timings["queue_s"] >= 0
        assert timings["batch_size"] == 1 and timings["batch_requests"] == 1

    sampled = post(server, "count", {"word": "abc", "letter": "z", "seed": 7})
    assert sampled.status == 200
    assert sampled.body["sampling"] == {  # the published generation_config.json's values
        "decoding": "sampled", "temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0,
        "seed": 7,
    }  # fmt: skip
    assert sampled.body["results"][0]["expected"] == 0


@pytest.mark.slow
def test_answers_equal_the_eval_engine_on_the_same_questions(server, model_dir):
    """Greedy: the server's raw text is letterwise.generation.generate's on the same prompts,
    with the model loaded the way the publish stage's load-back loads it."""
    from letterwise.chat import prompt_text
    from letterwise.generation import Sampling, generate, max_new_tokens_for
    from letterwise.presets import resolve_preset
    from letterwise.publishing.load_back import load_published
    from letterwise.tasks import spell_first

    provenance = json.loads((model_dir / "letterwise.json").read_text())
    model, tokenizer = load_published(
        model_dir, resolve_preset("qwen3-tiny"), provenance, "transformers"
    )
    greedy = Sampling("greedy", None, None, None, None, n_samples=1, seed=0)
    asks = {  # the question texts the endpoints use, written out here
        "spelling": [
            ({"word": w}, f"Spell the word '{w}'. Write its letters in order with a single "
             "space between them.", len(w)) for w in ("cat", "letter", "wisdom")
        ],
        "position": [
            ({"word": "letter", "index": 1}, "What is the 1st letter of 'letter'? Answer with "
             "the letter only.", 6),
            ({"word": "wisdom", "index": 2}, "What is the 2nd letter of 'wisdom'? Answer "
             "with the letter only.", 6),
        ],
        "count": [
            ({"word": "letter", "letter": "t"}, "How many times does the letter 't' appear in "
             "'letter'? Answer with a number only.", 6),
        ],
    }  # fmt: skip
    for task, questions in asks.items():
        items = [item for item, _, _ in questions]
        reply = post(server, task, {"items": items} | GREEDY)
        assert reply.status == 200, reply.body
        prompts = [prompt_text(tokenizer, text, thinking=False) for _, text, _ in questions]
        budgets = [
            max_new_tokens_for(task, n, thinking=False, thinking_budget=0) for _, _, n in questions
        ]
        expected = generate(
            model, tokenizer, prompts, max_new_tokens=budgets, sampling=greedy, batch_size=64
        )
        assert [r["raw"] for r in reply.body["results"]] == [e[0] for e in expected]
        assert reply.body["timings"]["batch_size"] == len(questions)

    # spell-first: the instrument's own prompt and budget
    row = {"task": "position", "word": "letter", "word_length": 6,
           "question": asks["position"][0][1]}  # fmt: skip
    reply = post(server, "position", asks["position"][0][0] | GREEDY | {"strategy": "spell_first"})
    assert reply.status == 200, reply.body
    expected = generate(
        model,
        tokenizer,
        [prompt_text(tokenizer, spell_first.question(row), thinking=False)],
        max_new_tokens=spell_first.max_new_tokens("position", 6),
        sampling=greedy,
        batch_size=64,
    )
    (result,) = reply.body["results"]
    assert result["raw"] == expected[0][0]
    parsed = spell_first.parse("position", result["raw"])
    assert (result["letter"], result["spelled"], result["in_format"]) == (
        parsed.answer,
        parsed.spelled,
        parsed.has_answer_line,
    )


@pytest.mark.slow
def test_live_accuracy_counters_follow_the_answers(server):
    before = scrape(server.url)
    items = [{"word": w, "letter": c} for w, c in (("banana", "a"), ("kiwi", "q"), ("apple", "p"))]
    reply = post(server, "count", {"items": items} | GREEDY)
    assert reply.status == 200
    after = scrape(server.url)
    outcomes = {"correct": 0, "wrong": 0, "unparseable": 0}
    for result in reply.body["results"]:
        key = (
            "unparseable"
            if result["count"] is None
            else "correct"
            if result["correct"]
            else "wrong"
        )
        outcomes[key] += 1
    for outcome, n in outcomes.items():
        labels = {"task": "count", "strategy": "direct", "outcome": outcome}
        grown = metric(after, "letterwise_answers_total", **labels) - metric(
            before, "letterwise_answers_total", **labels
        )
        assert grown == n, outcome
    assert (
        metric(after, "letterwise_batch_size_count", task="count")
        == metric(before, "letterwise_batch_size_count", task="count") + 1
    )
    assert metric(after, "letterwise_batch_size_sum", task="count") - metric(
        before, "letterwise_batch_size_sum", task="count"
    ) == len(items)
    for name in ("letterwise_generated_tokens_total", "letterwise_prompt_tokens_total"):
        assert metric(after, name, task="count") > metric(before, name, task="count")
    ok = {"endpoint": "/v1/count", "code": "200"}
    assert (
        metric(after, "letterwise_http_requests_total", **ok)
        == metric(before, "letterwise_http_requests_total", **ok) + 1
    )
    assert metric(after, "letterwise_queue_depth") == 0


@pytest.mark.slow
def test_eval_accuracy_and_model_info_gauges(server, model_dir):
    samples = scrape(server.url)
    metrics = json.loads((model_dir / "metrics" / "eval_position.json").read_text())
    tuned = metrics["count"].get("direct", metrics["count"])["tuned"]
    for bound, key in (("lower", "ci_low"), ("point", "accuracy"), ("upper", "ci_high")):
        gauge = metric(samples, "letterwise_eval_accuracy", task="count", strategy="direct",
                       bound=bound)  # fmt: skip
        assert gauge == pytest.approx(tuned[key])
    info = {"model": "qwen3-tiny", "adapter_revision": adapter_revision(model_dir),
            "mode": "non-thinking"}  # fmt: skip
    assert metric(samples, "letterwise_model_info", **info) == 1


# ---------------------------------------------------------------- bad input, policy, auth

BIG = "a" * (70 * 1024)
# (task or path, body | raw bytes, expected status, text the error must contain)
MALFORMED = [
    ("spelling", b"{not json", 422, "JSON decode error"),
    ("spelling", b"", 422, "body"),
    ("spelling", [1, 2], 422, "valid dictionary"),
    ("spelling", "cat", 422, "valid dictionary"),
    ("spelling", b"null", 422, "valid dictionary"),
    ("spelling", {}, 422, "body.question.word: Field required"),
    ("spelling", {"word": ""}, 422, "at least 2 characters"),
    ("spelling", {"word": "a"}, 422, "at least 2 characters"),
    ("spelling", {"word": "b3rry"}, 422, "body.question.word: String should match pattern"),
    ("spelling", {"word": "café"}, 422, "String should match pattern"),
    ("spelling", {"word": "two words"}, 422, "String should match pattern"),
    ("spelling", {"word": "berry\n"}, 422, "String should match pattern"),
    ("spelling", {"word": "a" * 65}, 422, "at most 64 characters"),
    ("spelling", {"word": 12345}, 422, "Input should be a valid string"),
    ("spelling", {"word": ["b", "e"]}, 422, "Input should be a valid string"),
    ("spelling", {"word": "berry", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ("spelling", {"word": "berry", "strategy": "spell_first"}, 422, "strategy: Input should be"),
    ("position", {"word": "berry"}, 422, "body.question.index: Field required"),
    ("position", {"word": "berry", "index": 0}, 422, "greater than or equal to 1"),
    ("position", {"word": "berry", "index": 6}, 422, "index 6 is past the end of 'berry'"),
    ("position", {"word": "berry", "index": "3"}, 422, "valid integer"),
    ("position", {"word": "berry", "index": 2.5}, 422, "valid integer"),
    ("position", {"word": "berry", "index": True}, 422, "valid integer"),
    ("position", {"word": "berry", "index": 65}, 422, "less than or equal to 64"),
    ("position", {"word": "berry", "index": 2, "strategy": "guess"}, 422, "strategy"),
    ("count", {"word": "berry"}, 422, "letter: Field required"),
    ("count", {"word": "berry", "letter": "rr"}, 422, "letter: String should match pattern"),
    ("count", {"word": "berry", "letter": "7"}, 422, "letter: String should match pattern"),
    ("count", {"items": []}, 422, "items: List should have at least 1 item"),
    ("count", {"items": [{"word": "ab", "letter": "a"}] * 33}, 422, "at most 32 items"),
    ("count", {"items": [{"word": "ab", "letter": "a"}], "word": "ab"}, 422, "word: Extra inputs"),
    ("count", {"items": [{"word": "a1", "letter": "a"}]}, 422, "items.0.word: String should"),
    ("count", {"items": "ab"}, 422, "items: Input should be a valid list"),
    ("count", {"word": "ab", "letter": "a", "temperature": 0}, 422, "equal to 0.01"),
    ("count", {"word": "ab", "letter": "a", "temperature": 9}, 422, "less than or equal to 2"),
    ("count", {"word": "ab", "letter": "a", "top_p": 1.5}, 422, "top_p: Input should be less"),
    ("count", {"word": "ab", "letter": "a", "top_k": -1}, 422, "top_k: Input should be greater"),
    ("count", {"word": "ab", "letter": "a", "seed": -3}, 422, "seed: Input should be greater"),
    ("count", {"word": "ab", "letter": "a", "decoding": "beam"}, 422, "decoding: Input should be"),
    ("count", {"word": "ab", "letter": "a", "decoding": "greedy", "top_k": 5}, 422,
     "top_k: sampling settings, for decoding 'sampled' only"),
    ("count", {"word": "ab", "letter": "a", "big": BIG}, 413, "larger than 65536 bytes"),
]  # fmt: skip


@pytest.mark.slow
def test_malformed_requests_get_a_4xx_naming_the_problem(server):
    assert len(MALFORMED) >= 30
    before = scrape(server.url)
    for task, body, status, text in MALFORMED:
        if isinstance(body, bytes):
            reply = call(server.url, "POST", f"/v1/{task}", raw=body, token=TOKEN,
                         headers={"Content-Type": "application/json"})  # fmt: skip
        else:
            reply = call(server.url, "POST", f"/v1/{task}", body, token=TOKEN)
        assert reply.status == status, (task, body, reply.body)
        assert text in reply.error, (task, body, reply.error)
        assert reply.body["status"] == status
    others = [
        (call(server.url, "GET", "/v1/spelling", token=TOKEN), 405, "GET is not allowed"),
        (call(server.url, "POST", "/v1/letters", {"word": "ab"}, token=TOKEN), 404, "no endpoint"),
        (call(server.url, "GET", "/nowhere"), 404, "no endpoint at /nowhere"),
        (call(server.url, "POST", "/v1/spelling", raw=b"word=berry", token=TOKEN,
              headers={"Content-Type": "application/x-www-form-urlencoded"}), 415,
         "Content-Type: application/json"),
        (call(server.url, "POST", "/v1/spelling", raw=b'{"word": "berry"}', token=TOKEN), 415,
         "no content type"),
    ]  # fmt: skip
    for reply, status, text in others:
        assert reply.status == status and text in reply.error, reply.body
    after = scrape(server.url)
    five_xx = sum(
        value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0] == "letterwise_http_requests_total" and dict(key[1])["code"].startswith("5")
    )
    assert five_xx == 0
    assert (
        call(server.url, "POST", "/v1/spelling", {"word": "ok"} | GREEDY, token=TOKEN).status == 200
    )


THINKING_ASKS = [
    ("spelling", {"word": "berry", "thinking": True}, "'thinking'"),
    ("spelling", {"word": "berry", "enable_thinking": True}, "'enable_thinking'"),
    ("position", {"word": "berry", "index": 1, "Thinking": "on"}, "'Thinking'"),
    ("position", {"word": "berry", "index": 1, "think": 1}, "'think'"),
    ("count", {"word": "berry", "letter": "r", "enableThinking": True}, "'enableThinking'"),
    ("count", {"word": "berry", "letter": "r", "thinking_budget": 512}, "'thinking_budget'"),
    ("count", {"word": "berry", "letter": "r", "reasoning": "high"}, "'reasoning'"),
    ("count", {"word": "berry", "letter": "r", "mode": "thinking"}, "mode 'thinking'"),
    ("spelling", {"items": [{"word": "berry", "enable_thinking": True}]}, "'enable_thinking'"),
]


@pytest.mark.slow
def test_thinking_is_refused_per_request(server):
    before = metric(scrape(server.url), "letterwise_thinking_refusals_total")
    for task, body, named in THINKING_ASKS:
        reply = post(server, task, body)
        assert reply.status == 422, reply.body
        assert named in reply.error and "non-thinking mode only" in reply.error, reply.error
        assert {e["type"] for e in reply.body["detail"]} == {"thinking_refused"}
    after = metric(scrape(server.url), "letterwise_thinking_refusals_total")
    assert after - before == len(THINKING_ASKS)
    # stating the only mode served is fine
    assert post(server, "count", {"word": "ab", "letter": "a", "mode": "non-thinking"} | GREEDY
                ).status == 200  # fmt: skip


@pytest.mark.slow
def test_bearer_token_guards_the_api_only(server):
    body = {"word": "berry"} | GREEDY
    missing = post(server, "spelling", body, token=None)
    assert missing.status == 401 and "missing bearer token" in missing.error
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = post(server, "spelling", body, token=TOKEN + "x")
    assert wrong.status == 401 and wrong.error == "invalid bearer token"
    basic = call(server.url, "POST", "/v1/count", {"word": "ab", "letter": "a"},
                 headers={"Authorization": f"Basic {TOKEN}"})  # fmt: skip
    assert basic.status == 401 and "expected `Bearer <token>`" in basic.error
    assert TOKEN not in json.dumps(wrong.body) + json.dumps(basic.body)
    assert post(server, "spelling", body).status == 200
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert call(server.url, "GET", path).status == 200, path


@pytest.mark.slow
def test_a_full_queue_answers_503_with_retry_after(server):
    items = [{"word": w} for w in ("letters", "spelling")]
    replies = fire(3 * MAX_QUEUE, lambda i: post(server, "spelling", {"items": items} | GREEDY))
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 503}, [r.body for r in replies]
    assert 1 <= statuses.count(200) and statuses.count(503) >= 1, statuses
    for reply in replies:
        if reply.status == 503:
            assert reply.headers["retry-after"] == "1"
            assert f"at capacity ({MAX_QUEUE} requests in flight" in reply.error
    assert metric(scrape(server.url), "letterwise_queue_depth") == 0
    assert post(server, "spelling", {"word": "ok"} | GREEDY).status == 200


LONGEST = ("abcdefghijklmnopqrstuvwxyz" * 3)[:64]  # the longest word served: 64 letters


def test_valid_boundary_requests_are_answered(server):
    """The documented limits are inclusive: the last letter's index, a 64-letter word and a
    batch of 32 questions each get a 200 with every question answered and scored."""
    last = post(server, "position", {"word": "strawberry", "index": 10} | GREEDY)
    assert last.status == 200, last.body
    assert (last.body["results"][0]["index"], last.body["results"][0]["expected"]) == (10, "y")
    longest = post(server, "position", {"word": LONGEST, "index": 64} | GREEDY)
    assert longest.status == 200, longest.body
    assert longest.body["results"][0]["expected"] == "l"  # letters 53..64 are a..l
    spelled = post(server, "spelling", {"word": LONGEST} | GREEDY)
    assert spelled.status == 200, spelled.body
    assert spelled.body["results"][0]["expected"] == list(LONGEST)
    counts = post(server, "count", {"items": [{"word": "banana", "letter": "a"}] * 32} | GREEDY)
    assert counts.status == 200, counts.body
    assert [r["expected"] for r in counts.body["results"]] == [3] * 32
    lasts = post(server, "position", {"items": [{"word": "berry", "index": 5}] * 32} | GREEDY)
    assert lasts.status == 200, lasts.body
    assert [r["expected"] for r in lasts.body["results"]] == ["y"] * 32


FUZZ_CHECKS = "not_a_server_error,response_schema_conformance"


def schemathesis_run(server: ServerProcess, tmp_path: Path, *args: str, checks: str = FUZZ_CHECKS):
    """The schemathesis CLI against the server's OpenAPI: exit 0 = no check failed."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
         "--checks", checks,
         "--max-examples", "20", "--seed", "20261123", "--workers", "1",
         "--include-path-regex", "^/v1/", "--suppress-health-check", "all",
         "--request-timeout", "300", "-H", f"Authorization: Bearer {TOKEN}",
         "--report", "junit", "--report-dir", str(tmp_path), *args],
        # run in tmp_path: schemathesis and hypothesis keep their databases in the cwd
        env=os.environ | {"SCHEMATHESIS_HOOKS": "tests.serve_fuzz_hooks",
                          "PYTHONPATH": str(REPO_ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )  # fmt: skip


@pytest.mark.slow
def test_schemathesis_negative_fuzz_finds_no_server_error(server, tmp_path):
    """Schema-violating bodies (coverage + fuzzing phases, 20 per endpoint): never a 5xx, and
    every response matches the documented schema. ~10 s."""
    result = schemathesis_run(
        server, tmp_path, "--mode", "negative", "--phases", "coverage,fuzzing"
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "No issues found" in result.stdout


@pytest.mark.slow
def test_prometheus_scrapes_every_metric_the_dashboard_and_alerts_use(server, tmp_path):
    for task, body in (("spelling", {"word": "cat"}), ("position", {"word": "cat", "index": 2}),
                       ("count", {"word": "cat", "letter": "t"})):  # fmt: skip
        assert post(server, task, body | GREEDY).status == 200
    assert post(server, "count", {"word": "cat", "letter": "t", "think": True}).status == 422
    url, process = prom.start_prometheus(tmp_path, server.url, prom.RULE_FILES)
    try:
        names = prom.metric_names_used()
        assert names, "the dashboard and rules use no metric"
        missing = []
        for name in sorted(names):
            try:
                prom.wait_for(url, name, timeout=20)
            except prom.PrometheusError:
                missing.append(name)
        assert not missing, f"no data through Prometheus for {missing}"
        up = prom.query(url, f'up{{job="{prom.JOB}"}}')
        assert [sample["value"][1] for sample in up] == ["1"]
        accuracy = prom.query(url, 'letterwise_eval_accuracy{bound="lower",strategy="direct"}')
        assert {sample["metric"]["task"] for sample in accuracy} == {
            "spelling",
            "position",
            "count",
        }
    finally:
        prom.stop_prometheus(process)


# ---------------------------------------------------------------- refused at start-up


@pytest.mark.slow
def test_thinking_mode_is_refused_at_start_up(model_dir):
    for args, env in (([], {"mode": "thinking"}), (["--mode", "thinking"], {}),
                      ([], {"mode": "enable_thinking"})):  # fmt: skip
        result = run_server_command(["--model-dir", str(model_dir), *args], server_env(**env))
        assert result.returncode == 2, result.stderr
        assert "serves non-thinking mode only" in result.stderr
        assert "--mode / LETTERWISE_MODE" in result.stderr


@pytest.mark.slow
def test_bad_settings_and_a_missing_model_stop_the_start(tmp_path, model_dir):
    bad = {"max_batch_size": "eight"}
    result = run_server_command([], server_env(**bad))
    assert result.returncode == 2 and "LETTERWISE_MAX_BATCH_SIZE: 'eight' is not a valid int" in (
        result.stderr
    )
    result = run_server_command(["--request-timeout-s", "0.01"], server_env(batch_timeout_s="0.05"))
    assert result.returncode == 2 and "longer than the batch timeout" in result.stderr
    result = run_server_command(["--model-dir", str(tmp_path / "none")], server_env())
    assert result.returncode == 1
    assert f"model directory {tmp_path / 'none'} does not exist" in result.stderr
    assert "dvc repro publish" in result.stderr
    helped = run_server_command(["--help"], server_env())
    for env in CONTRACT_ENV:
        assert env in " ".join(helped.stdout.split()), env


def test_settings_come_from_flags_over_environment_over_defaults():
    from letterwise.serve.config import ConfigError, load_settings

    defaults = load_settings([], {})
    assert (defaults.model_dir, defaults.host, defaults.port, defaults.mode) == (
        "models/published", "127.0.0.1", 8000, "non-thinking",
    )  # fmt: skip
    assert defaults.api_token is None and defaults.public()["auth"] == "none"
    env = {"LETTERWISE_MAX_QUEUE": "5", "LETTERWISE_PORT": "9000", "LETTERWISE_API_TOKEN": "s3"}
    settings = load_settings(["--port", "9100"], env)
    assert (settings.max_queue, settings.port, settings.api_token) == (5, 9100, "s3")
    assert "s3" not in repr(settings.public()) and settings.public()["auth"] == "bearer token"
    with pytest.raises(ConfigError, match="--device / LETTERWISE_DEVICE: choose one of"):
        load_settings(["--device", "tpu"], {})
    with pytest.raises(ConfigError, match="--port / LETTERWISE_PORT: the port must be"):
        load_settings([], {"LETTERWISE_PORT": "80"})


def test_eval_baseline_is_read_from_either_metrics_layout(tmp_path):
    from letterwise.serve.published import eval_accuracy

    def summary(accuracy: float) -> dict:
        return {"accuracy": accuracy, "ci_low": accuracy - 0.1, "ci_high": accuracy + 0.1}

    flat = {
        "mode": "non-thinking",
        "position": {
            "base": summary(0.2),
            "tuned": summary(0.5),
            "spell_first": {"tuned": summary(0.7)},
        },
    }
    nested = {"count": {"direct": {"base": summary(0.1), "tuned": summary(0.3)},
                        "spell_first": {"tuned": {"accuracy": None}}}}  # fmt: skip
    (tmp_path / "eval_position.json").write_text(json.dumps(flat))
    (tmp_path / "eval_count.json").write_text(json.dumps(nested))
    found = eval_accuracy(sorted(tmp_path.glob("eval_*.json")))
    expected = {
        ("position", "direct"): (0.4, 0.5, 0.6),
        ("position", "spell_first"): (0.6, 0.7, 0.8),
        ("count", "direct"): (0.2, 0.3, 0.4),  # the nested layout; the base model's 0.1 unused
    }  # spell_first of count has no accuracy: left out
    assert set(found) == set(expected)
    for key, (lower, point, upper) in expected.items():
        assert found[key] == pytest.approx({"lower": lower, "point": point, "upper": upper})


# ---------------------------------------------------------------- fuzz with valid bodies; slow


@pytest.mark.slow
def test_schemathesis_fuzz_with_valid_bodies_finds_no_server_error(server, tmp_path):
    """Positive and negative bodies, fuzzing phase, 20 per endpoint; valid ones generate
    (batches cut to 2 items, words to 6 letters by tests/serve_fuzz_hooks.py). Every valid
    body must be accepted (positive_data_acceptance: a 4xx for a body the schema allows fails),
    so refusing e.g. the last letter's index is caught. ~20 s."""
    result = schemathesis_run(
        server, tmp_path, "--mode", "all", "--phases", "fuzzing",
        checks=f"{FUZZ_CHECKS},positive_data_acceptance",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    assert "No issues found" in result.stdout


@pytest.mark.slow
def test_a_request_waiting_too_long_answers_504(model_dir, tmp_path):
    """One request at a time, 0.1 s patience: requests queued behind a long batch time out.
    ~1 min (most of it the server start)."""
    server = ServerProcess.start(
        model_dir, tmp_path, max_batch_size=1, batch_timeout_s=0.01, request_timeout_s=0.1
    )
    try:
        words = ["abcdefghijklmn", "opqrstuvwxyzab", "understanding", "letterwise"] * 4
        body = {"items": [{"word": w} for w in words]} | GREEDY
        replies = fire(4, lambda i: call(server.url, "POST", "/v1/spelling", body))
        statuses = sorted(r.status for r in replies)
        assert set(statuses) <= {200, 504} and 504 in statuses and 200 in statuses, statuses
        for reply in replies:
            if reply.status == 504:
                assert "waited more than 0.1 s" in reply.error
                assert "LETTERWISE_REQUEST_TIMEOUT_S" in reply.error
        samples = scrape(server.url)
        assert metric(samples, "letterwise_http_requests_total", endpoint="/v1/spelling",
                      code="504") == statuses.count(504)  # fmt: skip
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight(model_dir, tmp_path):
    """SIGTERM with six requests in flight: all six answer 200, then the server exits 0, its
    worker processes are gone and new connections are refused. ~1 min."""
    server = ServerProcess.start(model_dir, tmp_path, max_batch_size=4, batch_timeout_s=0.05)
    words = ["abcdefghijklmn", "opqrstuvwxyzab", "understanding", "letterwise"] * 4
    body = {"items": [{"word": w} for w in words]} | GREEDY
    try:
        replies: list = []

        def send() -> None:
            replies.append(call(server.url, "POST", "/v1/spelling", body))

        threads = [threading.Thread(target=send) for _ in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while metric(scrape(server.url), "letterwise_queue_depth") < 6:
            assert time.monotonic() < deadline, "the requests never got into the server"
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=300)
        assert server.process.wait(timeout=120) == 0, server.output()[-3000:]
        assert [r.status for r in replies] == [200] * 6, [r.body for r in replies]
        assert all(len(r.body["results"]) == len(words) for r in replies)
        assert "draining requests in flight" in server.output()
        with pytest.raises(OSError):
            call(server.url, "GET", "/healthz", timeout=5)
        deadline = time.monotonic() + 15
        while process_group_alive(server.process.pid):  # workers, manager, HTTP server
            assert time.monotonic() < deadline, "server processes outlived the main process"
            time.sleep(0.2)
    finally:
        server.stop()


def process_group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_stops_the_server(model_dir, tmp_path):
    """A folder whose base model needs CUDA, on a CPU-only server: every worker fails in setup,
    and the server exits 1 naming the failure. ~30 s."""
    import shutil

    broken = tmp_path / "published"
    shutil.copytree(model_dir, broken)
    provenance = json.loads((broken / "letterwise.json").read_text())
    (broken / "letterwise.json").write_text(json.dumps(provenance | {"model": "qwen3-4b"}))
    result = run_server_command(
        ["--model-dir", str(broken), "--port", str(prom.free_port())],
        server_env(device="cpu"),
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "needs a CUDA GPU" in output  # the worker's own error, logged
    assert "failed to load the model" in result.stderr.splitlines()[-1]
