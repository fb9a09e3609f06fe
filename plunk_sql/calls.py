"""The calls of the Python API, defined once: each function returns the named query
(queries.sql) it runs, its parameters and how its rows become the result. api.Client and
api.AsyncClient turn every definition into a method, so the two cannot drift."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One call: run `query` with `params`, give `result(rows)` back."""

    query: str
    params: dict[str, Any]
    result: Callable[[Rows], T]


@dataclass(frozen=True)
class Recipient:
    """A claimed recipient (a row of plunk_sql.claim_batch)."""

    contact_id: str
    email: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """A row of plunk_sql.campaign_progress."""

    campaign_id: str
    status: str
    paused: bool
    total: int
    pending: int
    claimed: int
    in_flight: int
    sent: int
    failed: int
    skipped: int
    started_at: datetime
    finished_at: datetime | None

    @property
    def settled(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def open(self) -> int:
        return self.pending + self.claimed + self.in_flight

    @property
    def finished(self) -> bool:
        return self.open == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO-8601 strings."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("started_at", "finished_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass(frozen=True)
class Outcome:
    """A row of plunk_sql.recipient_outcomes: recipients per state and reason."""

    state: str
    reason: str | None
    recipients: int


@dataclass(frozen=True)
class SweepAction:
    """A row of plunk_sql.sweep(): what one sweep did to one campaign."""

    action: str
    campaign_id: str | None
    affected: int


def _none(rows: Rows) -> None:
    return None


def start(campaign_id: str) -> Call[int]:
    """plunk_sql.start_campaign: snapshot the audience, set SENDING; the snapshot size.

    Idempotent. Raises NotFound, IllegalTransition (not DRAFT/SCHEDULED),
    InvalidCondition (bad audience), NullArgument.
    """
    return Call("start_campaign", {"campaign_id": campaign_id}, lambda r: int(r[0]["total"]))


def preview(campaign_id: str) -> Call[int]:
    """plunk_sql.preview_audience: how many contacts a start would snapshot now."""
    return Call("preview_audience", {"campaign_id": campaign_id}, lambda r: int(r[0]["recipients"]))


def claim(
    campaign_id: str, batch_size: int = 500, lease: timedelta = timedelta(minutes=5)
) -> Call[list[Recipient]]:
    """plunk_sql.claim_batch: up to batch_size recipients under a lease (committed claim).

    Empty when the campaign is not SENDING, paused, or has nothing pending. Raises
    InvalidArgument (batch_size, lease out of range), NotFound, NullArgument.
    """
    return Call(
        "claim_batch",
        {"campaign_id": campaign_id, "batch_size": batch_size, "lease": lease},
        lambda rows: [Recipient(r["contact_id"], r["email"], r["data"] or {}) for r in rows],
    )


def message(campaign_id: str) -> Call[dict[str, Any]]:
    """plunk_sql.campaign_message: id, subject, body, from_address, from_name, reply_to and
    project_id of a campaign plunk_sql is sending (a worker's only read of campaigns).

    Raises NotFound, IllegalTransition (not a SENDING toolkit campaign), NullArgument.
    """
    return Call("campaign_message", {"campaign_id": campaign_id}, lambda rows: dict(rows[0]))


def progress(campaign_id: str) -> Call[Progress | None]:
    """The campaign_progress row, or None when the toolkit did not start the campaign."""
    return Call(
        "campaign_progress",
        {"campaign_id": campaign_id},
        lambda rows: Progress(**rows[0]) if rows else None,
    )


def all_progress() -> Call[list[Progress]]:
    """campaign_progress for every campaign the toolkit started, newest first."""
    return Call("all_campaign_progress", {}, lambda rows: [Progress(**r) for r in rows])


def outcomes(campaign_id: str) -> Call[list[Outcome]]:
    """recipient_outcomes of a campaign: counts per state and reason."""
    return Call(
        "recipient_outcomes",
        {"campaign_id": campaign_id},
        lambda rows: [Outcome(**r) for r in rows],
    )


def sweep() -> Call[list[SweepAction]]:
    """plunk_sql.sweep(): expire leases, abandon stuck emails, finish campaigns."""
    return Call("sweep", {}, lambda rows: [SweepAction(**r) for r in rows])


def pause(campaign_id: str) -> Call[None]:
    """plunk_sql.pause_campaign: claims return nothing until resume. Raises IllegalTransition."""
    return Call("pause_campaign", {"campaign_id": campaign_id}, _none)


def resume(campaign_id: str) -> Call[None]:
    """plunk_sql.resume_campaign. Raises IllegalTransition (not paused, not SENDING)."""
    return Call("resume_campaign", {"campaign_id": campaign_id}, _none)


def cancel(campaign_id: str) -> Call[str]:
    """plunk_sql.cancel_campaign: settle what is open; the resulting campaign status.

    Raises IllegalTransition, RecipientsLocked (workers held the rows: retry), NotFound.
    """
    return Call("cancel_campaign", {"campaign_id": campaign_id}, lambda r: str(r[0]["status"]))


def repair(campaign_id: str) -> Call[str]:
    """plunk_sql.repair_campaign: finish a stuck campaign; what it did."""
    return Call("repair_campaign", {"campaign_id": campaign_id}, lambda r: str(r[0]["status"]))


def release_claims(
    campaign_id: str, contact_ids: list[str], email_ids: list[str]
) -> Call[tuple[int, int]]:
    """plunk_sql.release_claims: a stopping worker hands back its claims in force and its
    emails never given to SMTP (deleted); (recipients released, emails deleted)."""
    return Call(
        "release_claims",
        {"campaign_id": campaign_id, "contact_ids": contact_ids, "email_ids": email_ids},
        lambda r: (int(r[0]["released"]), int(r[0]["deleted"])),
    )


def repair_preview(campaign_id: str) -> Call[dict[str, Any] | None]:
    """What repair_campaign would do (read-only): status, toolkit, total_recipients,
    sent_count, created, sent, open; None for an unknown campaign."""
    return Call("repair_preview", {"campaign_id": campaign_id}, lambda r: dict(r[0]) if r else None)


def legacy_stuck_campaigns() -> Call[list[str]]:
    """Ids of campaigns stuck SENDING without a snapshot (plunk_sql.stuck_campaigns)."""
    return Call("legacy_stuck_campaigns", {}, lambda rows: [str(r["campaign_id"]) for r in rows])


# Every call, by the name both clients give its method.
ALL: tuple[Callable[..., Call[Any]], ...] = (
    start, preview, claim, message, progress, all_progress, outcomes,
    sweep, pause, resume, cancel, repair, release_claims, repair_preview,
    legacy_stuck_campaigns,
)  # fmt: skip
