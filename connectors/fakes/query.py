"""What the fakes' query languages (Jira's JQL, Targetprocess's `where`) share: cutting text into tokens."""

import re
from collections.abc import Callable


def regex_tokens(pattern: re.Pattern[str], text: str, unquote: Callable[[str], str]) -> list[tuple[str, str]]:
    """(kind, value) for each match of `pattern`'s named groups along `text`, a `string` token unquoted;
    ValueError at the first character no group matches, naming its 1-based position."""
    tokens, position, text = [], 0, text.rstrip()
    while position < len(text):
        found = pattern.match(text, position)
        if found is None or found.end() == position:
            raise ValueError(f"unexpected character at position {position + 1}")
        kind = found.lastgroup
        value = found.group(kind)
        tokens.append((kind, unquote(value) if kind == "string" else value))
        position = found.end()
    return tokens
