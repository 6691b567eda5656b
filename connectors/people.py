"""Who a person field names, across tools: the read side of person reconciliation.

A tool's person value (after mapping) is usually a display name, but may be an account id, a username
or an email. `PersonDirectory` is loaded once per integration run and answers, without further
queries, which Person a value names on a connection and which account stands for that person on
another connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connectors.models import Person, PersonAccount

# The account fields a value may match, strongest first: an id or username names one account, a
# display name may be shared, so it only decides when nothing stronger matches.
_ACCOUNT_FIELDS = ("account_id", "username", "email", "display_name")


def _folded(value: Any) -> str:
    return str(value).strip().casefold() if value is not None else ""


class PersonDirectory:
    def __init__(self):
        self.people: dict[int, Person] = {}
        self.default_person_id: int | None = None
        # (connection id, folded value) -> person id; None where the value names two people (ambiguous)
        self._named: dict[tuple[int, str], int | None] = {}
        self._by_email: dict[str, int | None] = {}
        # (person id, connection id) -> the account id the tool takes in a person field
        self._accounts: dict[tuple[int, int], str] = {}

    @classmethod
    def load(cls, connection_ids: Iterable[int]) -> PersonDirectory:
        """The accounts of these connections with their people, and the people's own emails: two queries."""
        directory = cls()
        accounts = (
            PersonAccount.objects.filter(connection_id__in=set(connection_ids))
            .select_related("person")
            .order_by("pk")
        )
        by_rank: list[dict[tuple[int, str], set[int]]] = [{} for _ in _ACCOUNT_FIELDS]
        for account in accounts:
            directory._add_person(account.person)
            directory._accounts.setdefault((account.person_id, account.connection_id), account.account_id)
            for rank, name in enumerate(_ACCOUNT_FIELDS):
                value = _folded(getattr(account, name))
                if value:
                    by_rank[rank].setdefault((account.connection_id, value), set()).add(account.person_id)
        # Weakest first, so that a stronger field overwrites what a weaker one said about a value.
        for names in reversed(by_rank):
            for key, person_ids in names.items():
                directory._named[key] = next(iter(person_ids)) if len(person_ids) == 1 else None
        emails: dict[str, set[int]] = {}
        for person in Person.objects.exclude(email="").order_by("pk"):
            directory._add_person(person)
            emails.setdefault(_folded(person.email), set()).add(person.pk)
        directory._by_email = {
            email: next(iter(ids)) if len(ids) == 1 else None for email, ids in emails.items()
        }
        return directory

    def _add_person(self, person: Person) -> None:
        self.people.setdefault(person.pk, person)
        if person.is_default:
            self.default_person_id = person.pk

    def person_for(self, connection_id: int, value: Any) -> Person | None:
        """The person `value` names on the connection: one of its accounts' id, username, email or
        display name, else a person's own email, ignoring case; None when nobody or several people match."""
        folded = _folded(value)
        if not folded:
            return None
        key = (connection_id, folded)
        person_id = self._named[key] if key in self._named else self._by_email.get(folded)
        return self.people.get(person_id) if person_id is not None else None

    def account_for(self, source_connection_id: int, value: Any, target_connection_id: int) -> str | None:
        """The target connection's account id for the person `value` names on the source connection;
        else the default person's account there; None for an empty value or when neither has one."""
        if not _folded(value):
            return None  # nobody assigned stays nobody assigned
        person = self.person_for(source_connection_id, value)
        if person is not None and (person.pk, target_connection_id) in self._accounts:
            return self._accounts[person.pk, target_connection_id]
        return self._accounts.get((self.default_person_id, target_connection_id))
