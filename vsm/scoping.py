"""Who may see what: the one place that turns a user into its reach.

Every `visible_to(user)` queryset method asks `reach_of(user)`; nothing else decides visibility.
- staff and superusers, and holders of `vsm.view_all_products` (leadership): everything;
- partner users: the products granted to their partner, and within them only the partner's scope;
- other users: the products they hold a role on, and everything in them;
- anonymous or inactive users: nothing.
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
