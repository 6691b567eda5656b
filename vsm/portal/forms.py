"""The portal's filters: a window of local days, a bucket and a flow item type, read from the URL.

Bad input never raises: the form collects a message for the page and falls back to the defaults, the
same limits as the metrics API (metrics.api).
"""

from datetime import date, timedelta

from django import forms

from metrics.api import DEFAULT_WINDOW_DAYS, FORECAST_MAX_DAYS_AHEAD
from metrics.calculators import (
    DORA_DEFAULT_FAILURE_WINDOW_DAYS,
    DORA_FAILURE_RATE_ATTEMPTS,
    DORA_FAILURE_RATE_SUCCESSFUL,
    DORA_LEAD_TIME_COMMIT,
    DORA_LEAD_TIME_PULL_REQUEST,
    DORA_MAX_PATTERN_LENGTH,
    Bucket,
    dora_production_pattern,
)
from metrics.selectors import (
    DORA_MAX_FAILURE_WINDOW_DAYS,
    DayWindow,
    WindowError,
    local_today,
    window_between,
)
from vsm.filters import InstantField
from vsm.models import FlowItemType

BUCKET_CHOICES = [(bucket.value, bucket.value.capitalize()) for bucket in Bucket]


class FilterForm(forms.Form):
    """A form of URL filters whose errors become messages on the page."""

    def messages(self) -> list[str]:
        if self.is_valid():
            return []
        out = []
        for name, errors in self.errors.items():
            label = self.fields[name].label if name in self.fields else None
            out.extend(f"{label}: {error}" if label else error for error in errors)
        return out


class WindowForm(FilterForm):
    window_start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    window_end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data, *, user, product=None, today: date | None = None):
        super().__init__(data)
        self.user = user
        self.today = today or (local_today(product) if product is not None else date.today())

    def clean(self):
        cleaned = super().clean()
        window = checked_window(self, cleaned, ("window_start", "window_end"), self.today)
        if window is not None:
            cleaned["window"] = window
        return cleaned

    def window(self) -> DayWindow:
        """The valid window, or the default one (the last DEFAULT_WINDOW_DAYS days) after bad input."""
        self.is_valid()
        return self.cleaned_data.get("window") or default_window(self.today)


def checked_window(form: forms.Form, cleaned: dict, names: tuple[str, str], default_last: date):
    """The window of days the two named fields give (metrics' limits and defaults), or None with the
    error added to the field at fault."""
    if any(name in form.errors for name in names):
        return None
    try:
        return window_between(
            cleaned.get(names[0]),
            cleaned.get(names[1]),
            default_last=default_last,
            default_days=DEFAULT_WINDOW_DAYS,
            names=names,
        )
    except WindowError as error:
        form.add_error(error.parameter, str(error))
        return None


def default_window(today: date) -> DayWindow:
    return DayWindow(today - timedelta(days=DEFAULT_WINDOW_DAYS - 1), today)


def previous_window(window: DayWindow) -> DayWindow:
    """The window of the same length just before this one."""
    length = (window.last_day - window.first_day).days + 1
    return DayWindow(window.first_day - timedelta(days=length), window.first_day - timedelta(days=1))


class BucketFilter(FilterForm):
    bucket = forms.ChoiceField(choices=BUCKET_CHOICES, required=False, label="Bucket")

    def __init__(self, data, *args, **kwargs):
        # Without a bucket in the URL, the select shows the default one (week), not its first choice.
        if data is not None and not data.get("bucket"):
            data = data.copy()
            data["bucket"] = Bucket.WEEK.value
        super().__init__(data, *args, **kwargs)

    def chosen_bucket(self) -> str:
        value = self.data.get("bucket") or Bucket.WEEK.value
        return value if value in {bucket.value for bucket in Bucket} else Bucket.WEEK.value


class FlowTypeFilter(FilterForm):
    """A `type` filter: a visible flow item type by slug, or None for all; an unknown slug is a message."""

    type = forms.CharField(required=False, max_length=100, label="Flow item type")

    def add_type_choices(self, user) -> None:
        self.types = list(FlowItemType.objects.visible_to(user).order_by("order", "name"))
        self.fields["type"].widget = forms.Select(
            choices=[("", "All types")] + [(t.slug, t.name) for t in self.types]
        )

    def clean_type(self):
        slug = self.cleaned_data.get("type") or ""
        if not slug:
            return None
        for flow_type in self.types:
            if flow_type.slug == slug:
                return flow_type
        known = ", ".join(t.slug for t in self.types)
        raise forms.ValidationError(f"unknown flow item type {slug!r}; known types: {known}")

    def flow_type(self):
        """The chosen type, or None (all types) when none or an unknown one was given."""
        if "type" in self.errors:
            return None
        self.is_valid()
        return self.cleaned_data.get("type")


class FlowFilterForm(FlowTypeFilter, BucketFilter, WindowForm):
    def __init__(self, data, *, user, product=None, today: date | None = None):
        super().__init__(data, user=user, product=product, today=today)
        self.add_type_choices(user)


class DoneItemsForm(FilterForm):
    """The drill-down filters: a half-open range of done instants (ISO 8601), a type, and a half-open
    range of flow time in seconds (a histogram bar's [lower, upper))."""

    done_after = InstantField(required=False, label="done_after")
    done_before = InstantField(required=False, label="done_before")
    type = forms.SlugField(required=False, max_length=100)
    flow_time_from = forms.FloatField(required=False, min_value=0)
    flow_time_below = forms.FloatField(required=False, min_value=0)

    def clean(self):
        cleaned = super().clean()
        after, before = cleaned.get("done_after"), cleaned.get("done_before")
        if after and before and before <= after:
            raise forms.ValidationError(f"done_before ({before}) is not after done_after ({after})")
        lower, upper = cleaned.get("flow_time_from"), cleaned.get("flow_time_below")
        if lower is not None and upper is not None and upper <= lower:
            raise forms.ValidationError(
                f"flow_time_below ({upper:g}) is not above flow_time_from ({lower:g})"
            )
        return cleaned


# --- item flow analyzer, DORA and forecast -------------------------------------------------------------

ITEM_STATE_CHOICES = [
    ("", "All states"),
    ("open", "Open (new, waiting, active)"),
    ("done", "Done"),
    ("canceled", "Canceled"),
]
ITEM_SORT_CHOICES = [
    ("-done_at", "Done, latest first"),
    ("done_at", "Done, earliest first"),
    ("-age", "Age, oldest first"),
    ("age", "Age, youngest first"),
    ("-flow_time", "Flow time, longest first"),
    ("flow_time", "Flow time, shortest first"),
    ("efficiency", "Efficiency, lowest first"),
    ("-efficiency", "Efficiency, highest first"),
]


class ItemAnalyzerForm(FlowTypeFilter):
    """The item flow analyzer's filters and sort order (an unknown value is a message, then the default)."""

    state = forms.ChoiceField(choices=ITEM_STATE_CHOICES, required=False, label="State")
    q = forms.CharField(required=False, max_length=100, label="Key or title")
    sort = forms.ChoiceField(choices=ITEM_SORT_CHOICES, required=False, label="Sort")

    def __init__(self, data, *, user):
        super().__init__(data)
        self.add_type_choices(user)

    def chosen(self, name: str) -> str:
        """A valid value of state, q or sort, or its default ("" for state and q)."""
        self.is_valid()
        return self.cleaned_data.get(name) or (ITEM_SORT_CHOICES[0][0] if name == "sort" else "")


DORA_LEAD_TIME_CHOICES = [
    (DORA_LEAD_TIME_COMMIT, "Per commit"),
    (DORA_LEAD_TIME_PULL_REQUEST, "Per pull request, from its first commit (DevLake)"),
]
DORA_FAILURE_RATE_CHOICES = [
    (DORA_FAILURE_RATE_ATTEMPTS, "Over every deployment attempt"),
    (DORA_FAILURE_RATE_SUCCESSFUL, "Over successful deployments (DevLake)"),
]


class DoraForm(BucketFilter, WindowForm):
    production = forms.CharField(
        required=False,
        strip=False,  # a regular expression: spaces are part of it
        max_length=DORA_MAX_PATTERN_LENGTH,
        label="Production environments (RE2 regular expression)",
    )
    failure_window_days = forms.IntegerField(
        required=False, min_value=1, max_value=DORA_MAX_FAILURE_WINDOW_DAYS, label="Failure window (days)"
    )
    # The defaults come first: a URL without them shows them selected.
    lead_time = forms.ChoiceField(
        choices=DORA_LEAD_TIME_CHOICES, required=False, label="Lead time for changes"
    )
    failure_rate = forms.ChoiceField(
        choices=DORA_FAILURE_RATE_CHOICES, required=False, label="Change failure rate"
    )

    def __init__(self, data, *args, **kwargs):
        # Without a convention in the URL, its select shows the default one selected, like the bucket.
        if data is not None and not (data.get("lead_time") and data.get("failure_rate")):
            data = data.copy()
            data["lead_time"] = data.get("lead_time") or DORA_LEAD_TIME_COMMIT
            data["failure_rate"] = data.get("failure_rate") or DORA_FAILURE_RATE_ATTEMPTS
        super().__init__(data, *args, **kwargs)

    def clean_production(self):
        value = self.cleaned_data.get("production") or ""
        try:
            dora_production_pattern(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return value or None

    def rules(self) -> dict:
        """The valid production pattern, failure window and conventions, or the defaults after bad input."""
        self.is_valid()
        return {
            "production_pattern": self.cleaned_data.get("production"),
            "failure_window_days": self.cleaned_data.get("failure_window_days")
            or DORA_DEFAULT_FAILURE_WINDOW_DAYS,
            "lead_time_convention": self.cleaned_data.get("lead_time") or DORA_LEAD_TIME_COMMIT,
            "failure_rate_convention": self.cleaned_data.get("failure_rate") or DORA_FAILURE_RATE_ATTEMPTS,
        }


FORECAST_DEFAULT_DAYS = 28
FORECAST_DEFAULT_ITEMS = 20
FORECAST_QUESTIONS = [("how_many", "How many items by a day?"), ("when", "When will N items be done?")]


class ForecastForm(FlowTypeFilter):
    """A forecast from the product's local today: how many items by a day, or when N items are done,
    over the daily throughput of a history window (by default the DEFAULT_WINDOW_DAYS days before)."""

    question = forms.ChoiceField(choices=FORECAST_QUESTIONS, required=False, label="Question")
    until = forms.DateField(required=False, label="By", widget=forms.DateInput(attrs={"type": "date"}))
    items = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, label="Items")
    history_start = forms.DateField(
        required=False, label="History from", widget=forms.DateInput(attrs={"type": "date"})
    )
    history_end = forms.DateField(
        required=False, label="History to", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, data, *, user, product):
        super().__init__(data)
        self.add_type_choices(user)
        self.start = local_today(product)

    def clean_until(self):
        until = self.cleaned_data.get("until")
        if until is None:
            return None
        if until < self.start:
            raise forms.ValidationError(f"{until} is before today ({self.start}).")
        if (until - self.start).days >= FORECAST_MAX_DAYS_AHEAD:
            raise forms.ValidationError(f"{until} is more than {FORECAST_MAX_DAYS_AHEAD} days ahead.")
        return until

    def clean(self):
        cleaned = super().clean()
        history = checked_window(
            self, cleaned, ("history_start", "history_end"), self.start - timedelta(days=1)
        )
        if history is not None:
            cleaned["history"] = history
        return cleaned

    def query(self) -> dict:
        """The forecast to make: history, and either items or until; defaults after bad input."""
        self.is_valid()
        data = self.cleaned_data
        history = data.get("history") or default_window(self.start - timedelta(days=1))
        if data.get("question") == "when":
            return {"history": history, "items": data.get("items") or FORECAST_DEFAULT_ITEMS, "until": None}
        until = data.get("until") or self.start + timedelta(days=FORECAST_DEFAULT_DAYS - 1)
        return {"history": history, "items": None, "until": until}
