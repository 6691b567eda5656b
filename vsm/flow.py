"""Flow dates of one item, derived from its ordered transition ledger (pure, no ORM)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from vsm.choices import IN_PROGRESS_STATES, FlowState


@dataclass(frozen=True)
class FlowDates:
    first_started_at: datetime | None
    done_at: datetime | None


def derive_flow_dates(ledger: Iterable[tuple[datetime, str]], current_state: str) -> FlowDates:
    """First entry into Active or Waiting, and the final entry into Done.

    `ledger` is (at, to_state) in time order. An item reopened after Done counts as done only at its
    final Done, so `done_at` is None unless the item is Done now.
    """
    first_started_at = None
    last_done_at = None
    for at, to_state in ledger:
        if first_started_at is None and to_state in IN_PROGRESS_STATES:
            first_started_at = at
        if to_state == FlowState.DONE:
            last_done_at = at
    return FlowDates(
        first_started_at=first_started_at,
        done_at=last_done_at if current_state == FlowState.DONE else None,
    )
