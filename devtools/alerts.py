"""See the alerts on a local machine: the messages in the alert queue, and a webhook listener
that prints what the app posts (`python -m devtools queue | listen PORT`)."""

from __future__ import annotations

import base64
import binascii
import http.server
import json
from typing import IO, Any

from azure.core.exceptions import ResourceNotFoundError

from shared.core.settings import Settings
from shared.store.tables import Storage


def show_queue(
    settings: Settings, out: IO[str], limit: int = 32, storage: Storage | None = None
) -> int:
    """Print the alert queue's messages (peeked, not taken), decoded, one JSON document a line,
    with the app's own settings (`BastionLogsStorage`, `ALERT_QUEUE`)."""
    storage = storage or Storage(settings, connect_retries=0)
    queue = settings.alert_queue
    client = storage.queues.get_queue_client(queue)
    try:
        depth = int(client.get_queue_properties().approximate_message_count or 0)
        messages = list(client.peek_messages(max_messages=limit))
    except ResourceNotFoundError:
        depth, messages = 0, []
    for message in messages:
        out.write(_decoded(str(message.content)) + "\n")
    shown = f" (the first {len(messages)})" if depth > len(messages) else ""
    out.write(f"{depth} message(s) in {queue}{shown}\n")
    storage.close()
    return 0


def _decoded(content: str) -> str:
    try:  # the app sends base64 (the Functions queue trigger's default)
        return base64.b64decode(content, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return content


def listen(port: int, out: IO[str]) -> None:
    """Answer every POST with 200 and print its JSON body, until interrupted."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                shown: Any = json.dumps(json.loads(body), ensure_ascii=False)
            except ValueError:
                shown = body.decode(errors="replace")
            out.write(f"POST {self.path}: {shown}\n")
            out.flush()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    out.write(f"listening on http://127.0.0.1:{port}/ (Ctrl-C stops)\n")
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
