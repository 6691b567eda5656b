from rest_framework import serializers

from vsm.models import Artifact, ArtifactLink, Product, StateTransition, Team
from vsm.scoping import reach_of
from vsm.selectors import origin_of


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "name", "slug", "description", "time_zone"]


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "product", "partner"]


class ArtifactSerializer(serializers.ModelSerializer):
    """An artifact; for partner users internal fields and the revenue value are left out entirely, and
    the connection and team are given only where the user may name them (vsm.selectors.origin_of)."""

    model = serializers.SlugRelatedField(source="artifact_model", slug_field="slug", read_only=True)
    flow_item_type = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True, help_text="Null for a supporting artifact."
    )
    tool = serializers.CharField(source="connection.kind", read_only=True, help_text="The tool's kind.")
    connection = serializers.IntegerField(
        source="connection_id", read_only=True, allow_null=True, help_text="Null where not yours to see."
    )
    connection_name = serializers.CharField(
        source="connection.name", read_only=True, allow_null=True, help_text="Null where not yours to see."
    )
    team = serializers.IntegerField(
        source="team_id", read_only=True, allow_null=True, help_text="Null when none or not yours to see."
    )

    class Meta:
        model = Artifact
        fields = [
            "id",
            "product",
            "model",
            "flow_item_type",
            "tool",
            "connection",
            "connection_name",
            "team",
            "external_id",
            "key",
            "title",
            "url",
            "tool_status",
            "flow_state",
            "created_at",
            "first_started_at",
            "done_at",
            "updated_at",
            "deleted_at",
            "fields",
            "value",
        ]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        user = request.user if request is not None else None
        origin = origin_of(user, instance)
        data["connection"], data["connection_name"] = origin.connection_id, origin.connection_name or None
        data["team"] = origin.team_id
        if request is not None and reach_of(request.user).is_partner:
            data.pop("value", None)
            hidden = self.context.get("internal_fields", {}).get(instance.artifact_model_id, set())
            data["fields"] = {name: value for name, value in data["fields"].items() if name not in hidden}
        return data


class ArtifactLinkSerializer(serializers.ModelSerializer):
    class Meta:
        model = ArtifactLink
        fields = ["id", "source", "target", "kind", "origin", "created_at"]


class StateTransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = StateTransition
        fields = ["id", "artifact", "at", "from_status", "to_status", "from_state", "to_state", "author"]
