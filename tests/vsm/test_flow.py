from datetime import UTC, datetime, timedelta

from vsm.choices import FlowState
from vsm.flow import derive_flow_dates

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def test_first_start_counts_waiting_as_started():
    dates = derive_flow_dates([(at(1), FlowState.WAITING), (at(3), FlowState.ACTIVE)], FlowState.ACTIVE)
    assert dates.first_started_at == at(1)
    assert dates.done_at is None


def test_reopened_item_is_done_at_its_final_done():
    ledger = [
        (at(1), FlowState.ACTIVE),
        (at(2), FlowState.DONE),
        (at(5), FlowState.ACTIVE),
        (at(9), FlowState.DONE),
    ]
    dates = derive_flow_dates(ledger, FlowState.DONE)
    assert dates.first_started_at == at(1)
    assert dates.done_at == at(9)


def test_item_reopened_and_not_done_again_has_no_done_time():
    ledger = [(at(1), FlowState.ACTIVE), (at(2), FlowState.DONE), (at(5), FlowState.ACTIVE)]
    assert derive_flow_dates(ledger, FlowState.ACTIVE).done_at is None


def test_canceled_item_is_never_done_and_may_never_start():
    dates = derive_flow_dates([(at(4), FlowState.CANCELED)], FlowState.CANCELED)
    assert dates == derive_flow_dates([], FlowState.CANCELED)
    assert dates.first_started_at is None and dates.done_at is None
