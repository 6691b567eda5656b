"""Admin for link rules: edit with validation, preview what a rule finds, relink a connection."""

import re
import string

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from connectors import tasks
from connectors.links import PATTERN_PRESETS, rule_preview
from connectors.models import LinkRule

TEMPLATE_PLACEHOLDERS = {"scope", "match"}


class LinkRuleForm(forms.ModelForm):
    preset = forms.ChoiceField(
        choices=[
            ("", "(write the pattern and template yourself)"),
            *((name, name) for name in PATTERN_PRESETS),
        ],
        required=False,
        help_text="Fills the pattern and the key template with a common shape.",
    )

    class Meta:
        model = LinkRule
        fields = [
            "connection",
            "name",
            "item_types",
            "source_path",
            "preset",
            "pattern",
            "key_template",
            "target_connection",
            "kind",
            "reverse",
            "enabled",
        ]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("preset"):
            cleaned["pattern"], cleaned["key_template"] = PATTERN_PRESETS[cleaned["preset"]]
        pattern = cleaned.get("pattern") or ""
        try:
            groups = set(re.compile(pattern).groupindex) if pattern else set()
        except re.error as error:
            self.add_error("pattern", f"This is not a regular expression Python can read: {error}.")
            return cleaned
        names = {
            name for _, name, _, _ in string.Formatter().parse(cleaned.get("key_template") or "") if name
        }
        unknown = names - groups - TEMPLATE_PLACEHOLDERS
        if unknown:
            self.add_error(
                "key_template",
                f"The template names {', '.join(sorted(unknown))}, which the pattern does not capture: "
                "use the pattern's named groups, {scope} or {match}.",
            )
        return cleaned

    def save(self, commit=True):
        rule = super().save(commit=False)
        rule.pattern, rule.key_template = self.cleaned_data["pattern"], self.cleaned_data["key_template"]
        if commit:
            rule.save()
        return rule


@admin.register(LinkRule)
class LinkRuleAdmin(admin.ModelAdmin):
    form = LinkRuleForm
    list_display = [
        "name",
        "connection",
        "source_path",
        "kind",
        "target_connection",
        "reverse",
        "enabled",
        "preview",
    ]
    list_filter = ["enabled", "kind", "connection"]
    list_select_related = ["connection", "target_connection"]
    search_fields = ["name", "source_path", "pattern"]
    autocomplete_fields = ["connection", "target_connection"]
    actions = ["relink"]

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("<path:object_id>/preview/", preview, name="connectors_linkrule_preview"),
            *super().get_urls(),
        ]

    @admin.display(description="preview")
    def preview(self, rule: LinkRule) -> str:
        return format_html(
            '<a href="{}">what it finds</a>', reverse("admin:connectors_linkrule_preview", args=[rule.pk])
        )

    @admin.action(
        description="Relink: apply the rules to every stored item of their connections",
        permissions=["change"],
    )
    def relink(self, request, queryset):
        connection_ids = sorted(set(queryset.values_list("connection_id", flat=True)))
        for connection_id in connection_ids:
            tasks.connection_relink_task.delay(connection_id)
        self.message_user(
            request, f"Queued a relink of {len(connection_ids)} connection(s).", messages.SUCCESS
        )

    def preview_view(self, request, object_id):
        rule = self.get_object(request, unquote(object_id))
        if rule is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, rule):
            raise PermissionDenied
        try:
            rows = rule_preview(rule)
        except re.error as error:
            self.message_user(request, f"The pattern does not compile: {error}.", messages.ERROR)
            rows = []
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "rule": rule,
            "rows": rows,
            "title": f"Preview of {rule}",
        }
        return TemplateResponse(request, "admin/connectors/linkrule/preview.html", context)
