"""`visible_to(user)` for the connector tables that people read (the landscape, the API); the rules are
vsm.scoping's, applied through a scope: what a scope feeds decides who may see it and what hangs off it.

- a scope: its product is in the user's reach; for a partner, also the scope reads one of the
  partner's own connections;
- a sync run: its scope is visible; a sync error: its scope is visible (an error of no scope, about the
  connection as a whole, only to those who reach everything);
- an integration: both of its scopes are visible, so a product owner never sees another product's
  integrations, their runs or pairs, even between tools both products use.
"""

from django.db import models
from django.db.models import Q

from vsm.scoping import reach_of


def scope_visibility(user, prefix: str = "") -> Q | None:
    """The condition on a scope (reached through `prefix`, e.g. "scope__") that makes it visible to the
    user; None when the user reaches everything."""
    reach = reach_of(user)
    if reach.everything:
        return None
    condition = Q(**{f"{prefix}product_id__in": reach.product_ids})
    if reach.is_partner:
        condition &= Q(**{f"{prefix}connection__partner_id": reach.partner_id})
    return condition


class _ThroughScopeQuerySet(models.QuerySet):
    scope_paths: tuple[str, ...] = ("scope__",)

    def visible_to(self, user):
        conditions = [scope_visibility(user, path) for path in self.scope_paths]
        if conditions[0] is None:
            return self.all()
        return self.filter(*conditions)


class ScopeQuerySet(_ThroughScopeQuerySet):
    scope_paths = ("",)


class SyncRunQuerySet(_ThroughScopeQuerySet):
    pass


class SyncErrorQuerySet(_ThroughScopeQuerySet):
    pass


class IntegrationQuerySet(_ThroughScopeQuerySet):
    scope_paths = ("source_scope__", "target_scope__")
