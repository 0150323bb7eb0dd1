"""A small OpenAI-compatible chat-completions server that injects faults on request.

Faults are chosen by a directive in the prompt (the tests put it in an image's caption):
``FAULT:429`` (429 with Retry-After the first two times), ``FAULT:500`` (500 once),
``FAULT:500always``, ``FAULT:timeout`` (the first answer comes too late), ``FAULT:broken``
(JSON that needs repair), ``FAULT:garbage`` (no JSON at all), ``FAULT:length``
(finish_reason=length), ``FAULT:filter`` (finish_reason=content_filter), ``FAULT:refusal``.
Anything else gets a valid rationale object built from the prompt's first caption.

Every request is logged with a content id (hash of the prompt and the image), so tests can
count how often the same request arrived. Runs in a thread; stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT = re.compile(r"FAULT:(\w+)")


def valid_answer(caption: str) -> dict:
    words = caption.rstrip(".")
    return {
        "rationale": f"I plan the scene first. {caption} " + "The layout is balanced. " * 12,
        "layout": f"Layout: {words}.",
        "style": "flat colours, clean edges",
        "composition": "centred, eye level",
        "short_caption": words,
        "paraphrases": [f"{words}, version {i}" for i in range(3)],
        "tags": ["shape", "colour", "simple"],
        "object_prompts": [words],
        "varied_captions": [words, f"a picture: {words}", f"{words} on a plain background"],
        "step_by_step": "1. Background. 2. Shapes. 3. Details.",
        "object_centric": [words],
        "region_descriptions": ["left: empty", "right: empty"],
    }


class FakeOpenAI:
    def __init__(self, latency: float = 0.0, structured: bool = True, timeout_delay: float = 3.0):
        self.latency, self.structured, self.timeout_delay = latency, structured, timeout_delay
        self.requests: list[str] = []  # content ids, in arrival order
        self.completed: list[str] = []  # content ids answered with 200
        self.response_formats: list[bool] = []
        self._lock = threading.Lock()
        ThreadingHTTPServer.request_queue_size = 1024  # many clients connect at once
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self.requests)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every answer
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake-vlm"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.handle(self, body)

        return Handler

    def handle(self, handler, body: dict) -> None:
        content = body["messages"][0]["content"]
        prompt = next(p["text"] for p in content if p["type"] == "text")
        image = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
        cid = hashlib.sha256((prompt + image).encode()).hexdigest()[:16]
        with self._lock:
            self.requests.append(cid)
            attempt = self.requests.count(cid)
            self.response_formats.append("response_format" in body)
        if "response_format" in body and not self.structured:
            handler._send(
                400,
                {
                    "error": {
                        "message": "response_format json_schema is not supported by this server",
                        "type": "invalid",
                    }
                },
            )
            return
        if self.latency:
            time.sleep(self.latency)
        fault = FAULT.search(prompt)
        fault = fault.group(1) if fault else None
        caption = re.search(r"^- (.+)$", prompt, re.M)
        caption = caption.group(1) if caption else "an image"
        if fault == "429" and attempt <= 2:
            handler._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.2"})
            return
        if (fault == "500" and attempt == 1) or fault == "500always":
            handler._send(500, {"error": {"message": "boom"}})
            return
        if fault == "timeout" and attempt == 1:
            time.sleep(self.timeout_delay)
        text, finish = json.dumps(valid_answer(caption)), "stop"
        if fault == "broken":
            text = "Here you go:\n```json\n" + text[:-1].replace('"tags"', "'tags'") + ",\n```"
        elif fault == "garbage":
            text = "The picture is nice."
        elif fault == "length":
            text, finish = text[: len(text) // 2], "length"
        elif fault == "filter":
            text, finish = "", "content_filter"
        elif fault == "refusal":
            text = "I'm sorry, but I can't help with describing this image."
        with self._lock:
            self.completed.append(cid)
        handler._send(
            200,
            {
                "id": f"chatcmpl-{cid}-{attempt}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt) // 4 + 85,
                    "completion_tokens": len(text) // 4,
                    "total_tokens": len(prompt) // 4 + 85 + len(text) // 4,
                },
            },
        )


def main() -> None:
    """Run the server on its own (benchmarks): prints its base URL, serves until killed."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    with FakeOpenAI(latency=args.latency) as server:
        print(server.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
