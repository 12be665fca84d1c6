"""mof-serve on a local Ray Serve (2 engine replicas, loopback): the client tests of the single-process
server pass against it; a conversation's follow-up turns reach its replica's cache; killing a
replica loses no request that was not on it, and the replica count recovers."""

from __future__ import annotations

import inspect
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

ray = pytest.importorskip("ray", reason="mof-serve --ray needs the [ray] extra")
pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai", reason="the serve tests use the openai client ([dev] extra)")
httpx = pytest.importorskip("httpx")

from mof.serve.config import ServeConfig  # noqa: E402

from . import test_api as api  # noqa: E402
from serve_probe import free_port  # noqa: E402

from .conftest import client  # noqa: E402

MODEL = "t6-demo"


def engine_replicas() -> dict:
    from ray import serve
    app = serve.status().applications.get("mof")
    return dict(app.deployments["mof-engine"].replica_states) if app else {}


@pytest.fixture(scope="module")
def ray_served():
    from ray import serve
    from mof.serve.ray_app import build
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(ServeConfig(), replicas=2), name="mof", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while httpx.get(url + "/health").status_code != 200:
            assert time.monotonic() < deadline, "the Ray app did not become healthy"
            time.sleep(0.2)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


CLIENT_TESTS = [api.test_completion_equals_generator_streaming_or_not, api.test_chat_streams_deltas_usage_and_done,
                api.test_eight_concurrent_seeded_requests_equal_their_generator_runs,
                api.test_n_choices_use_consecutive_seeds, api.test_logprobs_are_the_models_distribution,
                api.test_bad_chat_messages_get_400, api.test_unknown_model_and_route_get_404,
                api.test_sse_error_shape_is_json]


@pytest.mark.parametrize("test", CLIENT_TESTS, ids=lambda t: t.__name__[5:])
def test_client_tests_pass_against_ray(ray_served, demo_model, test):
    given = {"served": ray_served, "demo_model": demo_model}
    test(**{name: given[name] for name in inspect.signature(test).parameters})


def test_bad_fields_get_the_same_400s(ray_served):
    for body, param in BAD_BODIES:
        api.test_bad_completion_fields_get_400_naming_the_field(ray_served, body, param)


BAD_BODIES = [m.args[1] for m in api.test_bad_completion_fields_get_400_naming_the_field.pytestmark
              if m.name == "parametrize"][0]


def test_models_and_health(ray_served):
    assert [m.id for m in client(ray_served).models.list()] == [MODEL]
    assert httpx.get(ray_served + "/health").json()["status"] == "ok"


def test_health_and_metrics_cover_every_replica(ray_served):
    """/health sums the replicas' counts and lists each; /metrics has each replica's engine metrics."""
    from prometheus_client.parser import text_string_to_metric_families
    deadline = time.monotonic() + 30
    while len(httpx.get(ray_served + "/health").json().get("replicas", {})) != 2:
        assert time.monotonic() < deadline, httpx.get(ray_served + "/health").json()
        time.sleep(0.2)
    c = client(ray_served)
    with ThreadPoolExecutor(2) as pool:         # one conversation per replica is likely, not certain
        list(pool.map(lambda i: c.completions.create(model=MODEL, prompt=f"{i}号：床前明月光，" * 3, max_tokens=9),
                      range(6)))
    time.sleep(2.5)                             # the replicas report every second
    health = httpx.get(ray_served + "/health").json()
    assert set(health["replicas"]) == set(engine_replicas_ids())
    for key in ("active", "queued", "queue_length"):
        assert health[key] == sum(r[key] for r in health["replicas"].values())
    text = httpx.get(ray_served + "/metrics").text
    types = [ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a metric family appears twice"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    tokens = {s.labels["replica"]: s.value for s in families["mof_completion_tokens"].samples
              if s.name == "mof_completion_tokens_total"}
    assert set(tokens) == set(health["replicas"]) and sum(tokens.values()) >= 54
    assert any(s.labels.get("endpoint") == "/v1/completions" for s in families["mof_requests"].samples)


def engine_replicas_ids() -> list[str]:
    from ray import serve
    app = serve.status().applications["mof"]
    return [a["name"].rsplit("#", 1)[-1] for a in ray.util.list_named_actors(all_namespaces=True)
            if "mof-engine" in a["name"]] if app else []


def test_follow_up_turns_reach_their_replicas_cache(ray_served):
    c = client(ray_served)
    starts = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
              "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "红豆生南国，春来发几枝。愿君多采撷，此物最相思。"]
    for start in (s * 2 for s in starts):
        assert len(start) >= 32                          # completions are keyed by their first 32 characters
        first = c.completions.create(model=MODEL, prompt=start, max_tokens=12, seed=1)
        time.sleep(1.5)       # a person's pause: Ray's routers learn a replica's keys within ~1 s
        follow = c.completions.create(model=MODEL, prompt=start + first.choices[0].text + "又一句", max_tokens=12,
                                      seed=1)
        assert follow.model_extra["mof"]["replica"] == first.model_extra["mof"]["replica"]
        assert follow.usage.prompt_tokens_details.cached_tokens == len(start) + 12


def test_killing_a_replica_loses_only_its_requests_and_recovers(ray_served):
    c = client(ray_served)
    victim_prompt = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。" * 2
    warm = c.completions.create(model=MODEL, prompt=victim_prompt, max_tokens=4, seed=0)
    victim = warm.model_extra["mof"]["replica"]
    time.sleep(1.5)                                              # Ray's routers learn where it went
    prompts = [victim_prompt] + [f"{i}号：千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。" for i in range(7)]

    def run(prompt):
        try:
            r = c.completions.create(model=MODEL, prompt=prompt, max_tokens=1500, seed=0, timeout=120)
            return "ok", r.model_extra["mof"]["replica"]
        except openai.InternalServerError as e:
            return "error", str(e)

    with ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(run, p) for p in prompts]
        time.sleep(1.5)                                          # all in flight
        actor = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].endswith(victim) and "mof-engine" in a["name"])
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
        results = [f.result() for f in futures]
    assert results[0][0] == "error" and "replica" in results[0][1], (victim, results)   # the victim's
    for status, detail in results:
        assert status == "error" or detail != victim             # nothing completed on the dead replica
    assert any(status == "ok" for status, _ in results)          # the other replica's requests finished
    deadline = time.monotonic() + 120
    while engine_replicas().get("RUNNING", 0) != 2:
        assert time.monotonic() < deadline, f"replicas did not recover: {engine_replicas()}"
        time.sleep(0.5)
    assert c.completions.create(model=MODEL, prompt=victim_prompt, max_tokens=4, seed=0).choices[0].text \
        == warm.choices[0].text                                  # re-read afresh elsewhere: same tokens


def test_ray_settings_from_args_and_the_example_config():
    import yaml
    from pathlib import Path
    from mof.serve.ray_app import app_builder, settings_from_args
    config, replicas, bounds = settings_from_args({"model": "x.mof", "precision": "int4", "replicas": "2",
                                                   "max_batch": 8})
    assert (config.model, config.precision, config.max_batch, replicas, bounds) == (Path("x.mof"), "int4", 8, 2, None)
    assert settings_from_args({"int8": "true"})[0].precision == "int8"        # the short form, as --int8
    assert settings_from_args({"int8": "false"})[0].precision == "fp32"
    assert settings_from_args({"autoscale": "1:4", "api_key": 123})[2:] == ((1, 4),)
    assert settings_from_args({"api_key": 123})[0].api_key == "123"
    with pytest.raises(ValueError, match="unknown mof-serve setting 'modle'"):
        settings_from_args({"modle": "x.mof"})
    with pytest.raises(ValueError, match="autoscale"):
        settings_from_args({"autoscale": "4:1"})
    with pytest.raises(ValueError, match="max_batch: expected an integer >= 1, got 0"):   # as --max-batch 0
        settings_from_args({"max_batch": 0})
    with pytest.raises(ValueError, match="precision: expected one of fp32, int8, int4"):
        settings_from_args({"precision": "int9"})
    assert settings_from_args({"cors_origins": ["http://a", "http://b"], "queue_timeout": 5})[0] == \
        ServeConfig(cors_origins=("http://a", "http://b"), queue_timeout=5.0)
    assert settings_from_args({"threads": None, "state_dir": "/tmp/s"})[0].state_dir == Path("/tmp/s")
    example = Path(__file__).parents[2] / "examples" / "ray" / "serve_config.yaml"
    app = yaml.safe_load(example.read_text())["applications"][0]
    assert app["import_path"] == "mof.serve.ray_app:app_builder"
    config, replicas, _ = settings_from_args(app["args"])
    assert config.precision == "int8" and replicas == 2
    assert type(app_builder(app["args"])).__name__ == "Application"


def test_replica_reports_merge_into_one_exposition():
    from prometheus_client.parser import text_string_to_metric_families
    from mof.serve.metrics import Metrics
    from mof.serve.ray_stats import merge_metrics, merge_status
    a, b = Metrics(), Metrics()
    a.completion_tokens.inc(5)
    b.completion_tokens.inc(7)
    b.queue_wait.observe(0.2)
    reports = {"r1": ({"active": 1, "queued": 0, "queue_length": 2, "queue_wait_s": 0.5}, a.render().decode()),
               "r2": ({"active": 3, "queued": 1, "queue_length": 0, "queue_wait_s": 1.5}, b.render().decode())}
    families = {f.name: f for f in text_string_to_metric_families(merge_metrics(reports).decode())}
    assert {s.labels["replica"]: s.value for s in families["mof_completion_tokens"].samples
            if s.name.endswith("_total")} == {"r1": 5.0, "r2": 7.0}
    assert [s.value for s in families["mof_queue_wait_seconds"].samples
            if s.name.endswith("_count") and s.labels["replica"] == "r2"] == [1.0]
    status = merge_status(reports)
    assert (status["active"], status["queued"], status["queue_length"], status["queue_wait_s"]) == (4, 1, 2, 1.5)
    assert set(status["replicas"]) == {"r1", "r2"}
