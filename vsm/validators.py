"""Field validators on the models, so every path that cleans a model (admin, API, services) agrees."""

import difflib
import re
from functools import cache
from zoneinfo import available_timezones

from django.core.exceptions import ValidationError

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@cache
def iana_time_zones() -> frozenset[str]:
    # available_timezones() walks the tz database on disk: read it once per process.
    return frozenset(available_timezones())


def validate_time_zone(value: str) -> None:
    zones = iana_time_zones()
    if value in zones:
        return
    message = f"“{value}” is not an IANA time zone. Enter a name such as Europe/Berlin or UTC."
    close = difflib.get_close_matches(value, zones, n=1)
    if close:
        message += f" Did you mean {close[0]}?"
    raise ValidationError(message, code="unknown_time_zone")


def validate_hex_colour(value: str) -> None:
    if not HEX_COLOUR.fullmatch(value):
        raise ValidationError(
            f"“{value}” is not a colour code. Enter # and six hex digits (#rrggbb), e.g. #4e79a7.",
            code="not_hex_colour",
        )
