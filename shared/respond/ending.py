"""Active response (I/O; issue 27, part 1): end the Bastion sessions a compromise opened.

Opt-in (`ACTIVE_RESPONSE`: `off`, `dry-run` or `on`) and only for the severities named in
`ACTIVE_RESPONSE_SEVERITIES` (`critical` by default): an incident that says an account signed
in after a guessing campaign (`CompromisedUsers`). It runs after the incident's alert was
delivered, so ARM being slow or down never delays or loses the alert, and once per incident:

1. claim the incident (its `Response` property, written under the row's ETag: of two workers
   one acts; a claim left by a crash is taken again after `STALE`);
2. read the compromised accounts' sign-ins in the incident's window from the stored records
   (their Bastion host, account, target and time; for an address's incident, those from it);
3. ask each host for its active sessions; match (`matching.plan`); in `on`, disconnect the
   matched ones; in `dry-run`, nothing;
4. write what was done (or would be, or failed, and why) on the incident, and owe people a
   `response` notice of it, which delivery sends like any other (exactly once per channel).

The redelivery timer calls `sweep` too: an incident whose invocation failed before its response
(or whose claim went stale) is responded to within minutes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.data.tables import TableEntity

from shared.core import domain
from shared.core.domain import Kind
from shared.notify import incidents
from shared.notify.delivery import Deliverer
from shared.respond import matching
from shared.respond.matching import Action, SignIn
from shared.store import keys, layout
from shared.store.tables import Conflict, Storage, etag_of

log = logging.getLogger(__name__)
#: A claim older than this was left by a worker that stopped: the incident is taken again.
STALE = timedelta(minutes=10)
_ATTEMPTS = 5
#: How far back the redelivery timer looks for compromises left unanswered (by row write time).
SWEEP_BACK = timedelta(days=1)
#: Compromises written lately: the whole alerts table, filtered by the service (as the
#: notifications owed are found); compromises are few.
_SWEEP_FILTER = "CompromisedUsers ne @none and UpdatedAt ge @since"
#: Sessions a response lists on the incident (the rest are counted): whoever opened hundreds
#: of sessions must not push the row past Table Storage's 64 KiB a property.
MAX_LISTED = 20
_SIGN_IN_FIELDS = ["UserName", "UserEmail", "UserKey", "ClientIpKey", "TargetResourceId",
                   "TargetVMIPAddress", "TargetVMName", "TimeGenerated", "BastionResourceId",
                   "SourceBlob", "Outcome"]  # fmt: skip


class Responder:
    """Ends the sessions of compromises, once per incident; one per worker process."""

    def __init__(self, storage: Storage, deliverer: Deliverer, sessions: Any = None) -> None:
        s = storage.settings
        self.storage, self.deliverer = storage, deliverer
        self.mode = s.active_response
        self.severities = frozenset(s.active_response_severities)
        self.break_glass = frozenset(keys.identity(a) for a in s.break_glass_accounts)
        self.sessions = sessions  # a `bastion.Sessions`, made on first use (tests give theirs)
        self._lock = threading.Lock()

    def wanted(self, row: dict[str, Any], now: datetime) -> bool:
        """A compromise of a severity that acts, not responded to (nor claimed lately)."""
        if self.mode == matching.OFF or str(row.get("Severity")) not in self.severities:
            return False
        if not incidents.names(row, "CompromisedUsers"):
            return False
        claim = orjson.loads(row.get("Response") or "null")
        if not isinstance(claim, dict):
            return True
        return _stale(claim, now)

    def respond(self, row: TableEntity, now: datetime | None = None) -> None:
        """Respond to the incident of this row if it calls for it. ARM's failures are written
        on the incident, never raised; a storage fault is (the caller's retry repeats it)."""
        now = now or datetime.now(UTC)
        if not self.wanted(row, now):
            return
        claimed = self._write(row, {"state": "acting", "mode": self.mode, "at": now.isoformat()},
                              now, owe=False)  # fmt: skip
        if claimed is None:
            return  # another worker holds it, or it was answered meanwhile
        actions, error = self._act(self.sign_ins(claimed))
        summary = matching.summary(self.mode, actions, error)
        listed = [a.json() for a in actions[:MAX_LISTED]]
        done = {"state": "done", "mode": self.mode, "at": now.isoformat(), "summary": summary,
                "error": error, "actions": listed,
                "unlisted": len(actions) - len(listed)}  # fmt: skip
        written = self._write(claimed, done, now, owe=True)
        log.info("active response to %s: %s", row.get("AlertId"), summary)
        if written is not None:
            self.deliverer.deliver(written)

    def sweep(self, now: datetime | None = None) -> int:
        """Respond to what an earlier invocation could not: compromises decided or changed in
        the last `SWEEP_BACK` (found by when their rows were written, whatever day their
        records are of: a backlog's incident is as fresh as any), not answered, or claimed by
        a worker that stopped. Older ones are left alone: turning the feature on does not
        answer last year's incidents."""
        now = now or datetime.now(UTC)
        if self.mode == matching.OFF:
            return 0
        done = 0
        params = {"none": "[]", "since": now - SWEEP_BACK}
        for row in self.storage.alerts.query(_SWEEP_FILTER, params):
            if self.wanted(row, now):
                self.respond(row, now)
                done += 1
        return done

    # -- the parts ------------------------------------------------------------------------------
    def sign_ins(self, row: dict[str, Any]) -> list[SignIn]:
        """The compromised accounts' sign-ins in the incident's window (a minute either side);
        for an address's incident, only those from that address."""
        lo = layout.utc(row["FirstSeen"]) - timedelta(minutes=1)
        hi = layout.utc(row["LastSeen"]) + timedelta(minutes=2)
        out = []
        for account in incidents.names(row, "CompromisedUsers")[:20]:
            params = layout.account_window(account, lo, hi)
            for e in self.storage.events.query(layout.ACCOUNT_WINDOW, params, _SIGN_IN_FIELDS):
                if e.get("Outcome") != domain.Outcome.SUCCESS.value:
                    continue
                if row["SubjectKind"] == Kind.IP.value and e.get("ClientIpKey") != row["Subject"]:
                    continue
                out.append(_sign_in(e))
        return out

    def _act(self, sign_ins: Sequence[SignIn]) -> tuple[list[Action], str]:
        """Ask, match, end (in `on`); what was done, and the error that stopped it ('' if none)."""
        active: dict[str, list[matching.Session]] = {}
        try:
            client = self._client()
            for host in sorted({s.host_id for s in sign_ins if s.host_id}):
                active[host.casefold()] = client.active(host)
            actions = matching.plan(sign_ins, active, self.break_glass, self.mode)
            by_host: dict[str, list[str]] = {}
            for a in actions:
                if a.result == matching.TO_END:
                    by_host.setdefault(a.host_id, []).append(a.session_id)
            replied: dict[str, str] = {}
            for host, ids in sorted(by_host.items()):
                replied.update(client.disconnect(host, ids))
            return matching.outcome(actions, replied), ""
        except Exception as exc:  # noqa: BLE001 - ARM's failure is written on the incident
            status = getattr(exc, "status_code", None)
            error = f"{type(exc).__name__}" + (f", HTTP {status}" if status else "")
            log.warning("active response failed: %s (the alert was delivered)", error)
            planned = matching.plan(sign_ins, active, self.break_glass, self.mode)
            unsure = [a if a.result != matching.TO_END else
                      Action(a.session_id, a.account, a.target, a.host_id, matching.FAILED)
                      for a in planned]  # fmt: skip
            return unsure, error

    def _client(self) -> Any:
        with self._lock:
            if self.sessions is None:
                from azure.identity import DefaultAzureCredential

                from shared.respond.bastion import Sessions

                parts = self.storage.settings.connection_parts
                client_id = (
                    parts.get("clientId") if parts.get("credential") == "managedidentity" else None
                )
                credential = DefaultAzureCredential(managed_identity_client_id=client_id)
                self.sessions = Sessions(credential, self.storage.settings.arm_endpoint)
            return self.sessions

    def _write(
        self, row: TableEntity, response: dict[str, Any], now: datetime, owe: bool
    ) -> TableEntity | None:
        """Write `response` on the incident under its ETag; the row as written, or None when it
        is not ours to write (another worker's fresh claim, or already done)."""
        current: TableEntity | None = row
        for _ in range(_ATTEMPTS):
            if current is None:
                return None
            claim = orjson.loads(current.get("Response") or "null")
            acting = isinstance(claim, dict) and claim.get("state") == "acting"
            if claim is not None and not (acting and (owe or _stale(claim, now))):
                return None
            update = {"PartitionKey": current["PartitionKey"], "RowKey": current["RowKey"],
                      "Response": orjson.dumps(response).decode()}  # fmt: skip
            if owe:
                merged = {**current, **update, "ResponseSummary": response["summary"]}
                incidents.owe_response(merged, now)
                update = {
                    k: merged[k] for k in (*update, *incidents.RESPONSE_FIELDS) if k in merged
                }
            try:
                etag = self.storage.alerts.update(update, etag_of(current))
            except Conflict:
                current = self.deliverer.owing(
                    row["PartitionKey"], row["RowKey"], str(row.get("AlertId", ""))
                )
                continue
            written = TableEntity({**current, **update})
            written._metadata = {"etag": etag, "timestamp": None}  # its own, not the class's
            return written
        log.info("incident %s kept changing while its response was written", row.get("AlertId"))
        return None


def _stale(claim: dict[str, Any], now: datetime) -> bool:
    """A claim of a worker that stopped before it answered."""
    return claim.get("state") == "acting" and str(claim.get("at", "")) < (now - STALE).isoformat()


def _sign_in(e: dict[str, Any]) -> SignIn:
    host = layout.host_id_of_blob(str(e.get("SourceBlob") or ""))
    return SignIn(
        host or str(e.get("BastionResourceId") or ""),
        str(e.get("UserName") or e.get("UserEmail") or ""),
        str(e.get("TargetResourceId") or ""),
        str(e.get("TargetVMIPAddress") or ""),
        layout.utc(e["TimeGenerated"]),
        str(e.get("TargetVMName") or e.get("TargetVMIPAddress") or "?"),
    )
