"""Reads for the connector engine: mappings as plain rules, and a provider for a connection."""

import httpx
from django.conf import settings
from django.db import connection as database

from connectors.base import Connector, Installation, connector_for
from connectors.mappings import FieldRule, MappingSet, TypeRule
from connectors.models import ToolConnection, TypeMapping


def load_mapping_set(connection: ToolConnection) -> MappingSet:
    type_mappings = (
        TypeMapping.objects.filter(connection=connection)
        .select_related("artifact_model")
        .prefetch_related("field_mappings", "status_mappings")
        .order_by("tool_type", "priority", "id")
    )
    rules = tuple(
        TypeRule(
            tool_type=mapping.tool_type,
            artifact_model_id=mapping.artifact_model_id,
            flow_item_type_id=mapping.flow_item_type_id or mapping.artifact_model.default_flow_item_type_id,
            condition_path=mapping.condition_path,
            condition_value=mapping.condition_value,
            priority=mapping.priority,
            fields=tuple(
                FieldRule(
                    tool_path=field.tool_path,
                    model_field=field.model_field,
                    transform=field.transform,
                    value_map=dict(field.value_map or {}),
                )
                for field in mapping.field_mappings.all()
            ),
            statuses={status.tool_status: status.flow_state for status in mapping.status_mappings.all()},
            label=str(mapping),
        )
        for mapping in type_mappings
    )
    return MappingSet(
        connection_name=connection.name,
        rules=rules,
        rich_text_format=connector_for(connection.kind).rich_text_format,
    )


def connector_instance(
    connection: ToolConnection, *, transport: httpx.BaseTransport | None = None, sleep=None
) -> Connector:
    installation = Installation(
        connection_id=connection.pk,
        base_url=connection.base_url,
        credentials=dict(connection.credentials),
        options=dict(connection.options or {}),
        transport=transport,
        sleep=sleep,
        requests_per_second=connection.requests_per_second,
        rate_limiter_url=settings.RATE_LIMIT_REDIS_URL,
        # Per connection of this database: deployments (and test databases) may share one Redis.
        rate_limiter_key=f"vsm:rate:{database.settings_dict['NAME']}:{connection.pk}",
    )
    return connector_for(connection.kind)(installation)
