"""Bastion's session API through Azure Resource Manager (I/O; issue 27, parts 1 and 3).

    POST {host}/getActiveSessions?api-version=2025-05-01
    POST {host}/disconnectActiveSessions?api-version=2025-05-01   {"sessionIds": [...]}

Both may answer at once (200, a page: `{"value": [...], "nextLink"}`) or as a long-running
operation (202 with `Location`, polled with GET until it answers 200 with the first page);
further pages are read with GET on `nextLink`. Every link followed must stay on ARM's endpoint
(`Arm.follow`), so the token never leaves it. Rights: `Microsoft.Network/bastionHosts/
getactivesessions/action` and `.../disconnectactivesessions/action`, which the template grants
on the Bastion host through a custom role, only when active response is on (or, in dry-run,
the first alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.rest import HttpResponse

from shared.core import resources
from shared.hosts.arm import MAX_PAGES, Arm
from shared.hosts.coverage import NETWORK_API
from shared.hosts.diagnostics import ARM_ENDPOINT
from shared.respond import matching
from shared.respond.matching import Session

#: Most polls of one long-running operation, and the longest wait between two.
MAX_POLLS = 10
MAX_WAIT = 5.0


class Sessions(Arm):
    """Who is connected through a Bastion host, and ending their sessions. Raises on any
    failure: the caller records it (an alert never waits on this)."""

    def __init__(
        self,
        credential: TokenCredential,
        endpoint: str = ARM_ENDPOINT,
        sleep: Callable[[float], None] = time.sleep,
        **options: Any,
    ) -> None:
        """`options`: `timeout` and `retries`, as for any `Arm` client; `sleep` between polls."""
        super().__init__(credential, endpoint, agent="bastion-audit-response", **options)
        self.sleep = sleep

    def active(self, bastion_id: str) -> list[Session]:
        """The host's active sessions (every page)."""
        return matching.sessions(self._call(bastion_id, "getActiveSessions", None))

    def disconnect(self, bastion_id: str, ids: Sequence[str]) -> dict[str, str]:
        """End these sessions; what became of each id (`Disconnected`, `Failed`, `NotFound`)."""
        body = {"sessionIds": list(ids)}
        return matching.states(self._call(bastion_id, "disconnectActiveSessions", body))

    def _call(self, bastion_id: str, action: str, body: Any) -> list[Any]:
        if not resources.BASTION_ID.match(bastion_id):
            raise ValueError("not a Bastion host resource id")
        url = f"{self.endpoint}{quote(bastion_id, safe='/')}/{action}"
        first = self._settled(self.send("POST", url, {"api-version": NETWORK_API}, body))
        items, link = matching.page(first)
        for _ in range(MAX_PAGES):
            if link is None or len(items) >= matching.MAX_SESSIONS:
                return items
            more, link = matching.page(self._get(self.follow(link), None))
            items += more
        raise ValueError(f"more than {MAX_PAGES} pages of sessions")

    def _settled(self, response: HttpResponse) -> Any:
        """The body of a 200, or of the 200 a 202's `Location` answers once done."""
        for _ in range(MAX_POLLS):
            if response.status_code == 200:
                return response.json()
            if response.status_code != 202 or not response.headers.get("Location"):
                raise ValueError(f"unexpected answer {response.status_code} from Bastion")
            wait = response.headers.get("Retry-After", "1")
            self.sleep(min(float(wait) if wait.isdigit() else 1.0, MAX_WAIT))
            response = self.send("GET", self.follow(response.headers["Location"]))
        raise TimeoutError(f"the operation was still running after {MAX_POLLS} polls")
