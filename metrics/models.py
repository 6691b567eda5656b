"""Rollups: per-item flow figures and per-day load, recomputed from the transition ledgers by
metrics.services and read by metrics.selectors. Derived data only: a rebuild recreates every row.

Partner scope is not stored here: it is derived at read time through `Artifact.objects.visible_to`.
"""

import uuid

from django.core.exceptions import ValidationError
from django.db import models

from vsm.choices import FlowState
from vsm.models import Artifact, FlowItemType, Product, Team
from vsm.scoping import reach_of


class ItemFlowRollupQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        in_products = self.filter(product_id__in=reach.product_ids)
        if not reach.is_partner:
            return in_products
        return in_products.filter(artifact__in=Artifact.objects.visible_to(user).values("pk"))


class DailyLoadRollupQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Product-wide counts: never for partners, whose load is computed over their scope only."""
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        if reach.is_partner:
            return self.none()
        return self.filter(product_id__in=reach.product_ids)


class ProductTargetQuerySet(models.QuerySet):
    def visible_to(self, user):
        reach = reach_of(user)
        if reach.everything:
            return self.all()
        return self.filter(product_id__in=reach.product_ids)


class ItemFlowRollup(models.Model):
    """One flow item's figures (metrics.calculators.item_flow), seconds as floats.

    A pure function of the artifact and its ledger: `updated_at` (when computed) aside, a rebuild and the
    incremental refresh write the same row.
    """

    artifact = models.OneToOneField(
        Artifact, on_delete=models.CASCADE, primary_key=True, related_name="flow_rollup"
    )
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="item_flow_rollups")
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    flow_item_type = models.ForeignKey(FlowItemType, on_delete=models.CASCADE, related_name="+")
    current_state = models.CharField(max_length=16, choices=FlowState.choices)
    # The state the ledger ends in (the same as current_state unless the tool's changelog disagrees).
    last_state = models.CharField(max_length=16, choices=FlowState.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    start_inferred = models.BooleanField(default=False)
    restarted_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    flow_time = models.FloatField(null=True, blank=True)
    lead_time = models.FloatField(null=True, blank=True)
    active_time = models.FloatField(null=True, blank=True)
    waiting_time = models.FloatField(null=True, blank=True)
    efficiency = models.FloatField(null=True, blank=True)
    # The figures are taken at the item's last transition (its creation without any): an open item's
    # active or waiting time (per last_state) grows from there, and readers add the time since.
    measured_at = models.DateTimeField()
    # The span of the item's Active and Waiting intervals (until None: still in progress). Load on a day
    # can only involve items whose span holds that day's sample instant; refreshes use it to find them.
    in_progress_from = models.DateTimeField(null=True, blank=True)
    in_progress_until = models.DateTimeField(null=True, blank=True)
    # Where the item left Active/Waiting inside that span: [[end, restart], ...] ISO instants; None: never.
    in_progress_gaps = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(help_text="When these figures were computed.")

    objects = ItemFlowRollupQuerySet.as_manager()

    class Meta:
        ordering = ["artifact_id"]
        indexes = [
            models.Index(fields=["product", "flow_item_type", "done_at"], name="itemflow_product_type_done"),
            models.Index(fields=["product", "done_at"], name="itemflow_product_done"),
            models.Index(fields=["product", "in_progress_until"], name="itemflow_product_progress"),
        ]

    def __str__(self) -> str:
        return f"flow of artifact {self.artifact_id}"


class DailyLoadRollup(models.Model):
    """Flow items of one type in Active or Waiting at the end of one local day (product time zone).

    Only non-zero counts are stored: a missing row is a load of zero.
    """

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="daily_load_rollups")
    day = models.DateField()
    flow_item_type = models.ForeignKey(FlowItemType, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveIntegerField()

    objects = DailyLoadRollupQuerySet.as_manager()

    class Meta:
        ordering = ["product_id", "day", "flow_item_type_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "day", "flow_item_type"], name="daily_load_unique_per_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.product_id} {self.day}: {self.count} of type {self.flow_item_type_id}"


class ProductRollupState(models.Model):
    """How far a product's DailyLoadRollup reaches.

    Every day up to `load_through` (the local "today" of the last refresh) is stored. Later days carry
    the load of `load_through` forward: no ledger changed since, or a refresh would have moved it.
    `data_version` is drawn anew whenever any of the product's rollups is written: caches of figures
    computed from them (metrics.selectors.cached_per_reach) key on it.
    """

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="rollup_state"
    )
    load_through = models.DateField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)
    data_version = models.UUIDField(default=uuid.uuid4)

    def __str__(self) -> str:
        return f"rollups of {self.product_id} through {self.load_through}"


class ProductTarget(models.Model):
    """The share of each flow item type a product aims for: {type slug: share}, shares summing to 1."""

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="flow_target"
    )
    allocation = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductTargetQuerySet.as_manager()

    def __str__(self) -> str:
        return f"target allocation of {self.product_id}"

    def clean(self) -> None:
        allocation = self.allocation
        if not isinstance(allocation, dict):
            raise ValidationError({"allocation": "an object of {flow item type slug: share}"})
        known = set(FlowItemType.objects.values_list("slug", flat=True))
        unknown = sorted(set(allocation) - known)
        if unknown:
            raise ValidationError({"allocation": f"unknown flow item types: {', '.join(unknown)}"})
        shares = list(allocation.values())
        if any(isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= 1 for s in shares):
            raise ValidationError({"allocation": "each share is a number from 0 to 1"})
        if shares and abs(sum(shares) - 1) > 1e-6:
            raise ValidationError({"allocation": f"the shares sum to {sum(shares):g}, not 1"})
