"""`visible_to(user)` for every model a user can read; see vsm.scoping for the rules."""

from django.db import models
from django.db.models import Exists, OuterRef, Q

from vsm.choices import LinkKind
from vsm.scoping import reach_of


class ProductQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        return self.filter(pk__in=reach.product_ids)


class PartnerQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        if reach.is_partner:
            return self.filter(pk=reach.partner_id)
        return self.filter(grants__product_id__in=reach.product_ids).distinct()


class TeamQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        visible = self.filter(product_id__in=reach.product_ids)
        if reach.is_partner:
            return visible.filter(partner_id=reach.partner_id)
        return visible


class ReferenceDataQuerySet(models.QuerySet):
    """Artifact models and flow item types: shared vocabulary every signed-in user may read."""

    def visible_to(self, user):
        if user is not None and user.is_authenticated and user.is_active:
            return self.all()
        return self.none()


class ModelFieldQuerySet(ReferenceDataQuerySet):
    def visible_to(self, user):
        visible = super().visible_to(user)
        if reach_of(user).is_partner:
            return visible.filter(partner_visible=True)
        return visible


class ArtifactQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        in_products = self.filter(product_id__in=reach.product_ids)
        if not reach.is_partner:
            return in_products
        return in_products.filter(self.partner_scope(reach.partner_id, reach.product_ids))

    def without_copies_for(self, user):
        """Without the synced copies of artifacts the user may see: an integration links each copy it
        makes to its original (synced_with, copy -> original), and a copy is the same item. A copy whose
        original the user cannot see stays, the item as far as the user can tell."""
        link_model = self.model._meta.get_field("outgoing_links").related_model
        originals = self.model.objects.visible_to(user).filter(deleted_at__isnull=True)
        copy_of_a_visible_original = link_model.objects.filter(
            source_id=OuterRef("pk"), kind=LinkKind.SYNCED_WITH, target__in=originals.values("pk")
        )
        return self.exclude(Exists(copy_of_a_visible_original))

    def partner_scope(self, partner_id: int, product_ids) -> Q:
        """The partner's own artifacts (its connections or teams) and those directly linked to them."""
        link_model = self.model._meta.get_field("outgoing_links").related_model
        own = self.model.objects.filter(product_id__in=product_ids).filter(
            Q(connection__partner_id=partner_id) | Q(team__partner_id=partner_id)
        )
        own_ids = own.values("pk")
        return (
            Q(pk__in=own_ids)
            | Q(pk__in=link_model.objects.filter(source__in=own_ids).values("target_id"))
            | Q(pk__in=link_model.objects.filter(target__in=own_ids).values("source_id"))
        )


class StateTransitionQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        artifact_model = self.model._meta.get_field("artifact").related_model
        return self.filter(artifact__in=artifact_model.objects.visible_to(user).values("pk"))


class ArtifactLinkQuerySet(models.QuerySet):
    def visible_to(self, user):
        """A link is visible when both of its ends are."""
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        artifact_model = self.model._meta.get_field("source").related_model
        return self.between(artifact_model.objects.visible_to(user))

    def between(self, ends):
        """The links whose two ends are among `ends` (artifacts), each end tested row by row (EXISTS), so
        that what else narrows the links drives the query: given `source IN (ends) AND target IN (ends)`,
        SQLite probes every pair of ends (minutes for a product of 20,000 artifacts)."""
        return self.filter(
            Exists(ends.filter(pk=OuterRef("source_id"))), Exists(ends.filter(pk=OuterRef("target_id")))
        )


class ToolConnectionQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        if reach.is_partner:
            return self.filter(partner_id=reach.partner_id)
        artifact_model = self.model._meta.get_field("artifacts").related_model
        feeds_visible_product = artifact_model.objects.filter(
            connection=OuterRef("pk"), product_id__in=reach.product_ids
        )
        return self.filter(Exists(feeds_visible_product))
