"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, for tests only.

`responder(request) -> str` gives the assistant message content; `faults` is a queue of failures
served before normal answers: ("status", 429|500[, headers]), ("sleep", seconds), ("malformed", text),
("drop",) (the connection is closed without an answer), ("ok",) (a normal answer: to schedule faults
after some successes).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, responder):
        self.responder = responder
        self.faults: list[tuple] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.latency_s = 0.0  # added to every answer (the throughput benchmark's model latency)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else None
                if fault and fault[0] == "status":
                    self._send(
                        fault[1],
                        {"error": {"message": "scripted failure", "type": "server_error"}},
                        fault[2] if len(fault) > 2 else {},
                    )
                    return
                if fault and fault[0] == "drop":
                    self.close_connection = True
                    return
                if fault and fault[0] == "sleep":
                    time.sleep(fault[1])
                if server.latency_s:
                    time.sleep(server.latency_s)
                content = fault[1] if fault and fault[0] == "malformed" else server.responder(body)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
                    },
                )

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def system_prompts(self) -> list[str]:
        return [r["messages"][0]["content"] for r in self.requests]
