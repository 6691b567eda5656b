"""Admin for people and their accounts in each tool, which let person fields flow between tools."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count

from connectors import services
from connectors.models import Person, PersonAccount


class PersonForm(forms.ModelForm):
    class Meta:
        model = Person
        fields = ["name", "email", "is_default"]

    def clean_is_default(self):
        is_default = self.cleaned_data["is_default"]
        current = Person.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
        if is_default and current is not None:
            raise forms.ValidationError(f"{current} is the default person: untick it there first.")
        return is_default


class PersonAccountInline(admin.TabularInline):
    model = PersonAccount
    fields = ["connection", "account_id", "username", "email", "display_name"]
    autocomplete_fields = ["connection"]
    extra = 1


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    form = PersonForm
    list_display = ["name", "email", "is_default", "account_count"]
    list_filter = ["is_default", "accounts__connection"]
    search_fields = [
        "name",
        "email",
        "accounts__account_id",
        "accounts__username",
        "accounts__email",
        "accounts__display_name",
    ]
    inlines = [PersonAccountInline]
    actions = ["match_by_email"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(account_count=Count("accounts", distinct=True))

    @admin.display(description="accounts", ordering="account_count")
    def account_count(self, person: Person) -> int:
        return person.account_count

    @admin.action(
        description="Join the selected people who share an email (in their accounts or their own)",
        permissions=["change", "delete"],
    )
    def match_by_email(self, request, queryset):
        merged = services.people_match_by_email(queryset)
        if merged:
            joined = f"{merged} person" if merged == 1 else f"{merged} people"
            self.message_user(request, f"Joined {joined} to others sharing an email.", messages.SUCCESS)
        else:
            self.message_user(request, "None of the selected people share an email.", messages.INFO)


@admin.register(PersonAccount)
class PersonAccountAdmin(admin.ModelAdmin):
    list_display = ["display_name", "username", "email", "account_id", "connection", "person"]
    list_filter = ["connection"]
    list_select_related = ["connection", "person"]
    search_fields = ["account_id", "username", "email", "display_name", "person__name"]
    autocomplete_fields = ["person", "connection"]
