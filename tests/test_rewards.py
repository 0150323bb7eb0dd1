"""Rewards: the VLM judge against a fault-injecting OpenAI-compatible server and a real vLLM
CPU server, the local transformers judge and CLIP on tiny random models, weighted mixes
and the TRL adapter."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import re
import threading
import time

import pytest
from fake_openai import FAULT, FakeOpenAI
from PIL import Image

from rationale_forge.training.rewards import (
    JudgeResult,
    Reward,
    TRLReward,
    VLMJudge,
    WeightedReward,
    build_rewards,
    parse_boxed,
    trl_reward,
    yes_probability,
)

ANSWER = re.compile(r"ANSWER:([\w.]+)")
SECRET = "sk-test-DO-NOT-LOG-4242"


def image(colour=(200, 30, 30), size=(48, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _completion(body: dict, content: str, finish: str = "stop", logprobs=None) -> dict:
    choice = {
        "index": 0,
        "finish_reason": finish,
        "message": {"role": "assistant", "content": content},
    }
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return {
        "id": "chatcmpl-judge",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [choice],
        "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
    }


def _top(pairs: list[tuple[str, float]]) -> dict:
    top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in pairs]
    return {"content": [{"token": pairs[0][0], "logprob": top[0]["logprob"], "top_logprobs": top}]}


class FakeJudgeServer(FakeOpenAI):
    """The fault-injecting server, answering as a judge when the prompt says
    ``ANSWER:<kind>``; other prompts (``FAULT:...`` directives) go to the base server."""

    def __init__(self, latency: float = 0.0, **kw):
        super().__init__(**kw)
        self.judge_latency = latency
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = self.max_in_flight = 0

    def handle(self, handler, body: dict) -> None:
        with self._lock:
            self.bodies.append(body)
            self.auth.append(handler.headers.get("Authorization"))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(handler, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler, body: dict) -> None:
        text = next(p["text"] for p in body["messages"][0]["content"] if p["type"] == "text")
        kind = ANSWER.search(text)
        if kind is None:
            return super().handle(handler, body)
        kind = kind.group(1)
        if self.judge_latency:
            time.sleep(self.judge_latency)
        with self._lock:
            self.requests.append(kind)
            attempt = self.requests.count(kind)
        fault = FAULT.search(text)
        if fault and fault.group(1) == "500" and attempt == 1:
            return handler._send(500, {"error": {"message": "boom"}})
        if kind == "notjson":
            data = b"<html>upstream proxy error</html>"
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        answers = {
            "boxed1": "The image shows a red cube on grass. Requirements: one red cube. "
            "All met.\n\\boxed{1}",
            "boxed0": "The image shows a blue sphere. The prompt asks for a red cube.\n\\boxed{0}",
            "twoboxes": "First I thought \\boxed{1}, but the count is wrong, so \\boxed{ 0 }",
            "boxedbad": "Mostly right.\n\\boxed{yes}",
            "nobox": "The image matches the prompt.",
        }
        if kind in answers:
            return handler._send(200, _completion(body, answers[kind]))
        if kind.startswith("p"):  # ANSWER:p0.8 -> p(yes)=0.8 spread over two spellings
            p = float(kind[1:])
            pairs = [("Yes", 0.75 * p), (" yes", 0.25 * p), (" No", 1 - p), ("Maybe", 1e-3)]
            pairs = [(t, q) for t, q in pairs if q > 0]
            pairs.sort(key=lambda tq: -tq[1])
            return handler._send(200, _completion(body, pairs[0][0], "length", _top(pairs)))
        if kind == "neither":
            pairs = [("The", 0.5), ("A", 0.3), ("It", 0.1)]
            return handler._send(200, _completion(body, "The", "length", _top(pairs)))
        raise AssertionError(f"unknown answer kind {kind}")


@pytest.fixture
def judge_server():
    with FakeJudgeServer() as server:
        yield server


def _judge(server, mode="boxed", **kw) -> VLMJudge:
    kw.setdefault("backoff_s", 0.01)
    return VLMJudge(server.base_url, "fake-vlm", mode=mode, **kw)


# -- parsing --------------------------------------------------------------------------------
def test_parse_boxed_takes_the_last_box_and_refuses_anything_but_0_or_1():
    assert parse_boxed("reasoning... \\boxed{1}").score == 1.0
    assert parse_boxed("\\boxed{1} no wait \\boxed{0}").score == 0.0
    assert parse_boxed("\\boxed { 1 }").score == 1.0
    for text, why in [
        ("\\boxed{0.5}", "not 0 or 1"),
        ("\\boxed{}", "not 0 or 1"),
        ("the answer is 1", "no \\boxed"),
        ("", "empty"),
        (None, "empty"),
    ]:
        result = parse_boxed(text)
        assert result.score is None and why in result.reason


def test_yes_probability_sums_spellings_and_needs_yes_or_no():
    top = [
        {"token": "Yes", "logprob": math.log(0.5)},
        {"token": " yes", "logprob": math.log(0.1)},
        {"token": "\u0120no", "logprob": math.log(0.2)},
        {"token": "yesterday", "logprob": math.log(0.1)},
        {"token": "NO", "logprob": -9999.0},  # masked by a grammar: probability 0
    ]
    result = yes_probability(top)
    assert result.score == pytest.approx(0.6 / 0.8)
    assert result.answer == "yes"
    only_no = yes_probability([{"token": "No", "logprob": -0.1}, {"token": "x", "logprob": -3}])
    assert only_no.score == 0.0 and only_no.answer == "no"
    neither = yes_probability([{"token": "The", "logprob": -0.1}])
    assert neither.score is None and "neither" in neither.reason and "'The'" in neither.reason


# -- the HTTP judge against the fault-injecting server ----------------------------------------
def test_boxed_judge_parses_answers_and_sends_prompt_and_image(judge_server):
    judge = _judge(judge_server)
    prompts = [
        "a red cube ANSWER:boxed1",
        "a red cube ANSWER:boxed0",
        "two cats ANSWER:twoboxes",
        "a dog ANSWER:boxedbad",
        "a dog ANSWER:nobox",
    ]
    results = judge.score(prompts, [image() for _ in prompts])
    assert [r.score for r in results] == [1.0, 0.0, 0.0, None, None]
    assert "not 0 or 1" in results[3].reason and "no \\boxed" in results[4].reason
    assert results[0].answer.endswith("\\boxed{1}")
    body = next(b for b in judge_server.bodies if "boxed1" in json.dumps(b))
    assert body["max_tokens"] == 1024 and body["temperature"] == 0.0
    assert "logprobs" not in body and "response_format" not in body
    content = body["messages"][0]["content"]
    text = next(p["text"] for p in content if p["type"] == "text")
    assert "a red cube ANSWER:boxed1" in text and "\\boxed{1}" in text  # the template's rules
    url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "PNG" and decoded.size == (48, 40)
    assert decoded.getpixel((5, 5)) == (200, 30, 30)


def test_prob_judge_reads_yes_no_logprobs(judge_server):
    judge = _judge(judge_server, mode="prob", image_format="JPEG")
    prompts = ["a cat ANSWER:p0.8", "a cat ANSWER:p0.25", "a cat ANSWER:p1", "ANSWER:neither"]
    results = judge.score(prompts, [image() for _ in prompts])
    assert results[0].score == pytest.approx(0.8, abs=1e-6)
    assert results[1].score == pytest.approx(0.25, abs=1e-6)
    assert results[2].score == pytest.approx(1.0)
    assert results[3].score is None and "neither" in results[3].reason
    body = judge_server.bodies[0]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")


def test_failures_give_none_with_a_reason_and_the_key_is_never_logged(
    judge_server, monkeypatch, caplog
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    judge_server.timeout_delay = 2.0
    judge = _judge(judge_server, mode="boxed", timeout_s=0.5, max_retries=1)
    prompts = [
        "FAULT:500always",
        "FAULT:timeout",  # base server: slow first answer (then a rationale, no box)
        "FAULT:garbage",
        "ANSWER:notjson",
        "FAULT:500 ANSWER:boxed1",  # one 500, then the answer: retried
    ]
    results = judge.score(prompts, [image() for _ in prompts])
    scores = [r.score for r in results]
    assert scores == [None, None, None, None, 1.0]
    assert "HTTP 500" in results[0].reason and "2 attempt" in results[0].reason
    assert "no \\boxed" in results[1].reason  # the retry after the timeout got an answer
    assert "no \\boxed" in results[2].reason
    assert "JSONDecodeError" in results[3].reason or "Expecting value" in results[3].reason
    # the 500-once request was sent twice, the timed-out one twice
    assert judge_server.requests.count("boxed1") == 2
    # prob mode on an answer without log-probs
    prob = _judge(judge_server, mode="prob", max_retries=0).score(["FAULT:garbage"], [image()])
    assert prob[0].score is None and "no log-probs" in prob[0].reason
    # the key went to the server, and nowhere else
    assert f"Bearer {SECRET}" in judge_server.auth
    assert SECRET not in caplog.text
    assert all(SECRET not in (r.reason or "") for r in results)
    # every failure was logged with its reason
    assert caplog.text.count("no reward for prompt") >= 5


def test_unreachable_server_gives_none_not_an_exception(caplog):
    from vllm_server import free_port

    judge = VLMJudge(f"http://127.0.0.1:{free_port()}/v1", "m", mode="prob", max_retries=0)
    results = judge.score(["a cat"], [image()])
    assert results[0].score is None and "Connect" in results[0].reason


def test_concurrency_is_bounded_and_sync_score_works_from_threads_and_loops():
    with FakeJudgeServer(latency=0.15) as server:
        judge = _judge(server, max_concurrency=2)
        prompts = [f"a cube {i} ANSWER:boxed1" for i in range(6)]
        images = [image() for _ in prompts]
        assert [r.score for r in judge.score(prompts, images)] == [1.0] * 6
        assert server.max_in_flight == 2

        out: dict = {}
        thread = threading.Thread(target=lambda: out.update(r=judge.score(prompts[:2], images[:2])))
        thread.start()
        thread.join(30)
        assert [r.score for r in out["r"]] == [1.0, 1.0]

        async def inside_a_running_loop():
            sync = judge.score(prompts[:1], images[:1])  # must not deadlock the loop
            also = await judge.ascore(prompts[1:3], images[1:3])
            return sync + also

        assert [r.score for r in asyncio.run(inside_a_running_loop())] == [1.0] * 3


def test_judge_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        VLMJudge("http://x/v1", "m", mode="vote")
    with pytest.raises(ValueError, match="one image per prompt"):
        VLMJudge("http://x/v1", "m").score(["a", "b"], [image()])
    with pytest.raises(FileNotFoundError, match="nope.j2"):
        VLMJudge("http://x/v1", "m", template="nope.j2")


def test_custom_template(judge_server, tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("Judge this: {{ prompt }} -- answer in a box")
    judge = _judge(judge_server, template=str(template))
    assert judge.score(["ANSWER:boxed1"], [image()])[0].score == 1.0
    text = judge_server.bodies[-1]["messages"][0]["content"][0]["text"]
    assert text.strip() == "Judge this: ANSWER:boxed1 -- answer in a box"


# -- composition and TRL --------------------------------------------------------------------
class ListReward(Reward):
    """Returns the given scores, in order (a real Reward, for testing the mixing)."""

    def __init__(self, name: str, scores: list[float | None]):
        self.name, self.values = name, scores
        self.calls = 0

    async def ascore(self, prompts, images):
        self.calls += 1
        return [
            JudgeResult(s, None if s is not None else f"{self.name} failed") for s in self.values
        ]


class BrokenReward(Reward):
    name = "broken"

    def score(self, prompts, images):
        raise RuntimeError("judge fell over")


def test_weighted_mean_over_rewards_that_gave_a_value():
    a = ListReward("a", [1.0, None, 0.0, None])
    b = ListReward("b", [0.0, 0.5, None, None])
    mixed = WeightedReward([(a, 3.0), (b, 1.0)])
    results = mixed.score(["p"] * 4, [image()] * 4)
    assert results[0].score == pytest.approx(0.75)  # (3*1 + 1*0) / 4
    assert results[1].score == pytest.approx(0.5)  # only b
    assert results[2].score == pytest.approx(0.0)  # only a
    assert results[3].score is None and "a failed" in results[3].reason
    assert "b failed" in results[3].reason
    assert mixed.last_parts == {"a": [1.0, None, 0.0, None], "b": [0.0, 0.5, None, None]}
    # a part that raises counts as missing for the whole batch
    with_broken = WeightedReward([(ListReward("a", [0.2, 0.4]), 1.0), (BrokenReward(), 5.0)])
    results = with_broken.score(["p", "q"], [image(), image()])
    assert [r.score for r in results] == pytest.approx([0.2, 0.4])
    assert "judge fell over" in results[0].reason
    with pytest.raises(ValueError, match="must be positive"):
        WeightedReward([(a, 0.0)])
    same = WeightedReward([(ListReward("a", [1.0]), 1.0), (ListReward("a", [0.0]), 1.0)])
    same.score(["p"], [image()])
    assert set(same.last_parts) == {"a", "a_2"}


def test_build_rewards_from_specs(judge_server, tmp_path):
    from rationale_forge.filters.tiny_clip import build_tiny_clip

    config, weights = build_tiny_clip(tmp_path / "clip")
    reward = build_rewards(
        [
            {
                "type": "vlm_judge",
                "weight": 2.0,
                "base_url": judge_server.base_url,
                "model": "fake-vlm",
                "mode": "boxed",
            },
            {
                "type": "clip",
                "weight": 1.0,
                "model_name": config,
                "pretrained": weights,
                "device": "cpu",
            },
        ]
    )
    results = reward.score(["a red cube ANSWER:boxed1"], [image()])
    clip_score = reward.last_parts["clip"][0]
    assert reward.last_parts["judge_boxed"] == [1.0]
    assert -1.0 <= clip_score <= 1.0
    assert results[0].score == pytest.approx((2.0 * 1.0 + clip_score) / 3.0)
    with pytest.raises(ValueError, match="spec 0: type 'judge' unknown"):
        build_rewards([{"type": "judge"}])
    with pytest.raises(ValueError, match=r"spec 1 \(clip\).*colour"):
        build_rewards([ListReward("a", [1.0]), {"type": "clip", "colour": "red"}])
    with pytest.raises(ValueError, match="no reward"):
        build_rewards([])


def test_trl_adapter_reads_prompts_and_images_and_logs_parts():
    mixed = WeightedReward(
        [(ListReward("a", [1.0, None]), 1.0), (ListReward("b", [0.0, None]), 1.0)]
    )
    func = TRLReward(mixed, name="judge")
    assert func.__name__ == "judge"
    metrics, extra = {}, {}
    out = func(
        prompts=[
            "a red cube",
            [{"role": "user", "content": [{"type": "text", "text": "two cats"}]}],
        ],
        completions=["rationale one", "rationale two"],
        completion_ids=[[1], [2]],
        images=[image(), [image()]],
        log_metric=lambda k, v: metrics.__setitem__(k, v),
        log_extra=lambda k, v: extra.__setitem__(k, v),
        trainer_state=None,
    )
    assert out == [0.5, None]
    assert metrics == {
        "rewards/a/mean": 1.0,
        "rewards/b/mean": 0.0,
        "rewards/judge/missing_frac": 0.5,
    }
    assert extra["judge_reason"][0] == "" and "a failed" in extra["judge_reason"][1]
    with pytest.raises(ValueError, match="'images' field"):
        func(prompts=["x"], completions=["y"])
    with pytest.raises(ValueError, match="1 prompts but 2 images"):
        func(prompts=["x"], completions=["y"], images=[image(), image()])
    with pytest.raises(ValueError, match="sample 0: expected a PIL image"):
        func(prompts=["x"], completions=["y"], images=["not an image"])
    assert trl_reward([ListReward("c", [0.3])]).__name__ == "reward"


def test_trl_adapter_is_accepted_by_grpo_trainer_reward_handling():
    """TRL names reward functions by ``__name__`` and calls sync ones with keywords."""
    from trl.trainer.utils import is_async_callable

    func = trl_reward(WeightedReward([(ListReward("a", [0.7]), 1.0)]), name="geneval_judge")
    assert not is_async_callable(func)
    assert func(prompts=["p"], completions=["c"], images=[image()]) == [0.7]


# -- local models -----------------------------------------------------------------------------
def test_transformers_judge_on_tiny_qwen(tiny_qwen):
    import torch

    from rationale_forge.training.rewards import TransformersJudge

    judge = TransformersJudge(str(tiny_qwen), mode="prob", device="cpu", batch_size=3)
    # this tokenizer splits "yes" into pieces: the multi-token path is exercised
    assert any(len(seq) > 1 for seq in judge.candidates["yes"])
    prompts = ["a red cube", "two cats on a sofa, the left one black", "a dog"]
    images = [image(), image((20, 200, 40), (64, 64)), image((10, 10, 10), (30, 70))]
    batched = judge.score(prompts, images)
    assert all(r.score is not None and 0.0 < r.score < 1.0 for r in batched)
    judge.batch_size = 1  # padding must not change anything
    single = judge.score(prompts, images)
    assert [r.score for r in single] == pytest.approx([r.score for r in batched], abs=1e-5)

    # reference: p(each spelling) from one full forward pass per spelling, no padding
    inputs = judge._inputs(prompts[:1], images[:1])
    logp = {}
    with torch.inference_mode():
        for word, seqs in judge.candidates.items():
            total = 0.0
            for seq in seqs:
                ids = torch.cat([inputs["input_ids"], torch.tensor([seq])], dim=1)
                types = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, len(seq))], 1)
                kw = dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
                kw["mm_token_type_ids"] = types.long()
                logits = judge.net(**kw).logits[0].float().log_softmax(-1)
                start = inputs["input_ids"].shape[1] - 1
                total += math.exp(sum(float(logits[start + k, t]) for k, t in enumerate(seq)))
            logp[word] = total
    assert batched[0].score == pytest.approx(logp["yes"] / (logp["yes"] + logp["no"]), rel=1e-4)

    boxed = TransformersJudge(str(tiny_qwen), mode="boxed", device="cpu", max_tokens=6)
    results = boxed.score(prompts[:2], images[:2])
    # a random model writes no box: None, with the reason
    assert all(r.score is None and "boxed" in r.reason and r.answer for r in results)


def test_clip_reward_on_tiny_clip(tmp_path):
    import open_clip
    import torch

    from rationale_forge.filters.tiny_clip import build_tiny_clip
    from rationale_forge.training.rewards import ClipReward

    config, weights = build_tiny_clip(tmp_path)
    reward = ClipReward(config, weights, device="cpu", batch_size=2)
    prompts = ["a red square", "a green field", "a black cat sleeping on a very long sofa " * 10]
    images = [image(), image((20, 200, 40)), image((0, 0, 0), (100, 30)).convert("L")]
    results = reward.score(prompts, images)
    assert all(-1.0 <= r.score <= 1.0 for r in results)
    # the same numbers straight from open_clip
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=weights)
    model.eval()
    tokenizer = open_clip.get_tokenizer("tiny-clip")
    with torch.inference_mode():
        img = model.encode_image(torch.stack([preprocess(i.convert("RGB")) for i in images]))
        txt = model.encode_text(tokenizer(prompts))
        cos = torch.nn.functional.cosine_similarity(img, txt).tolist()
    assert [r.score for r in results] == pytest.approx(cos, abs=1e-4)


# -- the real vLLM server -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_judge_server(tmp_path_factory):
    """One vLLM CPU server for this module, serving the tiny random Qwen2-VL with "yes" and
    "no" added as single tokens (as in real Qwen2.5-VL vocabularies)."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer
    from vllm_server import start_vllm_server

    from rationale_forge.vlm.tiny import build_tiny_qwen2_vl

    model_dir = build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl-judge"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens(["yes", "no", "Yes", "No"])
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    log_path = tmp_path_factory.mktemp("vllm-judge") / "server.log"
    with start_vllm_server(
        model_dir, enforce_eager=True, log_path=log_path, max_model_len=4096
    ) as server:
        yield server


def test_prob_judge_on_the_real_vllm_server(vllm_judge_server):
    import openai

    base_url, model, _ = vllm_judge_server
    prompts = ["a red cube", "three green apples on a table"]
    images = [image(), image((20, 200, 40), (64, 64))]

    # A random model rarely puts yes/no in its top 20: a value or None with the reason.
    free = VLMJudge(base_url, model, mode="prob", timeout_s=120).score(prompts, images)
    for r in free:
        assert (r.score is not None and 0.0 <= r.score <= 1.0) or "neither" in r.reason

    # Restricted to yes/no by vLLM's guided choice, the log-probs always hold both.
    guided = {"structured_outputs": {"choice": ["yes", "no"]}}
    judge = VLMJudge(base_url, model, mode="prob", timeout_s=120, extra_body=guided)
    results = judge.score(prompts, images)
    assert all(r.score is not None and 0.0 < r.score < 1.0 for r in results), results

    # the same value from the server's log-probs, read with the reference client
    client = openai.OpenAI(base_url=base_url, api_key="unused", timeout=120, max_retries=0)
    buf = io.BytesIO()
    images[0].save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    resp = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": judge.render(prompts[0])},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
        max_tokens=1,
        temperature=0,
        logprobs=True,
        top_logprobs=20,
        extra_body=guided,
    )
    top = {t.token: math.exp(t.logprob) for t in resp.choices[0].logprobs.content[0].top_logprobs}
    assert results[0].score == pytest.approx(top["yes"] / (top["yes"] + top["no"]), rel=1e-4)


def test_boxed_judge_on_the_real_vllm_server(vllm_judge_server):
    base_url, model, _ = vllm_judge_server
    prompts = ["a red cube", "two cats"]
    images = [image(), image((20, 200, 40))]
    # unconstrained, the random model writes no box (or is cut off): None with a reason
    free = VLMJudge(base_url, model, mode="boxed", max_tokens=16).score(prompts, images)
    assert all(r.score is None and r.reason for r in free)
    # a regex makes it end in a box, which is parsed
    regex = {"structured_outputs": {"regex": r"[a-z ]{0,12}\\boxed\{[01]\}"}}
    judge = VLMJudge(base_url, model, mode="boxed", max_tokens=40, extra_body=regex)
    results = judge.score(prompts, images)
    for r in results:
        assert r.score in (0.0, 1.0), r
        assert r.answer.endswith(f"\\boxed{{{int(r.score)}}}")


def test_json_answers_are_not_a_judges_business(judge_server):
    """A server answering something else entirely (the base server's rationale JSON)."""
    results = _judge(judge_server).score(["no directive here"], [image()])
    assert results[0].score is None and "no \\boxed" in results[0].reason
    assert json.loads(results[0].answer)["rationale"]
