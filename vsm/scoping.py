"""Who may see what: the one place that turns a user into its reach.

Every `visible_to(user)` queryset method asks `reach_of(user)`; nothing else decides visibility.
- staff and superusers, and holders of `vsm.view_all_products` (leadership): everything;
- partner users: the products granted to their partner, and within them only the partner's scope;
- other users: the products they hold a role on, and everything in them;
- anonymous or inactive users: nothing.

What an item in reach may say of where it comes from (`Reach.may_name`): the tool's kind always; its
tool connection and team by name or id only where the user may see that connection or team itself. For
a partner, that is its own: the in-house items linked to its own are in its scope, their in-house tool
and team are not (every page, API answer and export blanks them, as /api/connections/<id>/ and
/api/teams/<id>/ answer 404). Anyone else may name every connection and team of what it reaches.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reach:
    everything: bool = False
    product_ids: frozenset[int] = frozenset()
    partner_id: int | None = None

    @property
    def is_partner(self) -> bool:
        return self.partner_id is not None

    def may_name(self, owner_partner_id: int | None) -> bool:
        """Whether a tool connection or team (of an item in reach) owned by this partner (None: in-house)
        may be named to the user."""
        return not self.is_partner or owner_partner_id == self.partner_id


NOTHING = Reach()
EVERYTHING = Reach(everything=True)


def reach_of(user) -> Reach:
    if user is None or not user.is_authenticated or not user.is_active:
        return NOTHING
    cached = getattr(user, "_vsm_reach", None)
    if cached is None:
        cached = _compute_reach(user)
        user._vsm_reach = cached
    return cached


def _compute_reach(user) -> Reach:
    from vsm.models import PartnerGrant, PartnerMembership, ProductRole

    if user.is_superuser or user.is_staff:
        return EVERYTHING
    partner_id = PartnerMembership.objects.filter(user=user).values_list("partner_id", flat=True).first()
    if partner_id is not None:
        granted = PartnerGrant.objects.filter(partner_id=partner_id).values_list("product_id", flat=True)
        return Reach(product_ids=frozenset(granted), partner_id=partner_id)
    if user.has_perm("vsm.view_all_products"):
        return EVERYTHING
    roles = ProductRole.objects.filter(user=user).values_list("product_id", flat=True)
    return Reach(product_ids=frozenset(roles))
