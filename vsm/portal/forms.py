"""The portal's filters: a window of local days, a bucket and a flow item type, read from the URL.

Bad input never raises: the form collects a message for the page and falls back to the defaults, the
same limits as the metrics API (metrics.api).
"""

from datetime import date, datetime, timedelta

from django import forms
from django.utils.dateparse import parse_datetime

from metrics.api import DEFAULT_WINDOW_DAYS, EARLIEST_DAY, LATEST_DAY
from metrics.calculators import Bucket
from metrics.selectors import MAX_WINDOW_YEARS, DayWindow, local_today
from vsm.models import FlowItemType

BUCKET_CHOICES = [(bucket.value, bucket.value.capitalize()) for bucket in Bucket]


class WindowForm(forms.Form):
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
        last = cleaned.get("window_end") or self.today
        first = cleaned.get("window_start") or last - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
        for day in (first, last):
            if not EARLIEST_DAY <= day <= LATEST_DAY:
                raise forms.ValidationError(f"{day} is outside {EARLIEST_DAY} to {LATEST_DAY}.")
        if last < first:
            raise forms.ValidationError(f"The window ends ({last}) before it starts ({first}).")
        window = DayWindow(first, last)
        if window.is_longer_than_years(MAX_WINDOW_YEARS):
            raise forms.ValidationError(
                f"The window from {first} to {last} is longer than {MAX_WINDOW_YEARS} years."
            )
        cleaned["window"] = window
        return cleaned

    def window(self) -> DayWindow:
        """The valid window, or the default one (the last DEFAULT_WINDOW_DAYS days) after bad input."""
        self.is_valid()
        return self.cleaned_data.get("window") or default_window(self.today)

    def messages(self) -> list[str]:
        if self.is_valid():
            return []
        out = []
        for name, errors in self.errors.items():
            label = self.fields[name].label if name in self.fields else None
            out.extend(f"{label}: {error}" if label else error for error in errors)
        return out


def default_window(today: date) -> DayWindow:
    return DayWindow(today - timedelta(days=DEFAULT_WINDOW_DAYS - 1), today)


def previous_window(window: DayWindow) -> DayWindow:
    """The window of the same length just before this one."""
    length = (window.last_day - window.first_day).days + 1
    return DayWindow(window.first_day - timedelta(days=length), window.first_day - timedelta(days=1))


class FlowFilterForm(WindowForm):
    bucket = forms.ChoiceField(choices=BUCKET_CHOICES, required=False, label="Bucket")
    type = forms.CharField(required=False, max_length=100, label="Flow item type")

    def __init__(self, data, *, user, product=None, today: date | None = None):
        super().__init__(data, user=user, product=product, today=today)
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

    def chosen_bucket(self) -> str:
        value = self.data.get("bucket") or Bucket.WEEK.value
        return value if value in {bucket.value for bucket in Bucket} else Bucket.WEEK.value

    def flow_type(self):
        """The chosen type, or None (all types) when none or an unknown one was given."""
        if "type" in self.errors:
            return None
        self.is_valid()
        return self.cleaned_data.get("type")


class DoneItemsForm(forms.Form):
    """The drill-down filters: a half-open range of done instants (ISO 8601) and a type."""

    done_after = forms.CharField(required=False, max_length=64)
    done_before = forms.CharField(required=False, max_length=64)
    type = forms.SlugField(required=False, max_length=100)

    def _instant(self, name) -> datetime | None:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value:
            return None
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise forms.ValidationError(
                f"{name} {value!r} is not an ISO 8601 date and time with a UTC offset"
            )
        return parsed

    def clean_done_after(self):
        return self._instant("done_after")

    def clean_done_before(self):
        return self._instant("done_before")

    def clean(self):
        cleaned = super().clean()
        after, before = cleaned.get("done_after"), cleaned.get("done_before")
        if after and before and before <= after:
            raise forms.ValidationError(f"done_before ({before}) is not after done_after ({after})")
        return cleaned
