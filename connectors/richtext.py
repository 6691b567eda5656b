"""Rich text between tools: one canonical form, CommonMark Markdown, converted at the edges. Pure, no ORM.

Targetprocess and Zendesk keep HTML, Jira Cloud's REST v3 answers with the Atlassian Document Format
(ADF, JSON), Jira's REST v2 (Data Center reads, and all our writes) speaks Jira wiki markup, GitHub and
GitLab keep Markdown. The integration engine keeps one form and converts at the edges:

    to_markdown(value, source_format)   a tool's rich text -> canonical Markdown (str)
    from_markdown(text, target_format)  canonical Markdown -> the tool's form (str; an ADF dict for "adf")

Each conversion reads its input into one small document tree, tidies the tree, and writes it out.

Rules:
- The formats are FORMATS; any other name raises ValueError naming them. Nothing else raises: broken
  HTML, odd wiki markup, ADF with unknown node types, missing keys or a value that is not a dict all
  convert (where a library fails on its input, the input is kept as plain text). None and "" convert
  to "" (from_markdown to "" or an empty ADF document). A dict or list given to to_markdown is read as
  ADF whatever the format named (a Jira Cloud answer where wiki markup was expected still converts);
  another non-string is read as its str().
- Every form keeps: paragraphs, headings 1-6, bullet and ordered lists (nested), links with their URL,
  emphasis, strong, strikethrough (GitHub's `~~`), inline code, code blocks with their language, hard
  line breaks, block quotes and horizontal rules.
- Text is never lost: a construct a form cannot hold becomes its plain text (the degradations below).
  Only what is not text goes: tags, attributes, link titles, HTML comments, and the content of
  <script>, <style>, <head>, <template> and <noscript>.
- Canonical Markdown is normalised: ATX headings; `-` bullets and `1.` numbers (`*` and `1)` for a list
  right after a list of its kind, which Markdown would otherwise join to it); lists tight unless an
  item needs blank lines (two paragraphs, or a paragraph after a nested list); fenced code blocks with
  the language as info (a language other than letters, digits and `#+.-` is dropped); `___` rules;
  inline links (references resolved); `*`, `**` and `~~` delimiters, with whitespace moved outside
  them, and emphasis that CommonMark cannot open or close where it stands (glued to a word by
  punctuation) written as plain text; `\\` hard breaks, soft breaks kept as newlines; literal
  punctuation backslash-escaped where Markdown would read it as markup; runs of spaces as one space;
  no trailing whitespace on any line (code included), no blank lines at either end of a code block or
  of the document, no trailing newline. URLs are percent-encoded the CommonMark way; a javascript:,
  vbscript:, file: or data: URL (but an image's) is no link.
- Markdown input: raw HTML reads as GitHub shows it: an HTML block converts by the HTML rules below,
  an inline <br> is a hard break, other inline tags go and their text stays. Tables, task lists and
  other extensions beyond CommonMark and strikethrough stay as their literal text. Images are kept.
- HTML: written by markdown-it, a soft break as <br /> (GitHub, GitLab and Jira show a newline inside
  a paragraph as a line break); read by markdownify. Underline, sub/superscript and colour become
  plain text, a table its rows as text, a link to an unsafe URL its text.
- ADF: a soft break is written as a hardBreak (it reads back as a hard break). Images become links to
  the picture (the alt text, or the URL, as link text). ADF holds code with no mark but a link, so
  code inside emphasis loses the emphasis. A list item or a quote holds no heading (its text becomes a
  paragraph), no quote (its blocks are lifted out) and no rule (dropped). Read: panels become quotes;
  mentions, emoji, status lozenges and dates become their text, cards become links; tables, expands,
  layouts, task and decision lists and unknown nodes give their content (a node with a `text`, or a
  known inline node with an attrs.text, gives that text); marks other than strong, em, strike, code
  and link go.
- Jira wiki: written with wiki escapes (backslashes; `&#92;` for a backslash, `&amp;` before an entity);
  a bare URL followed by whitespace stays as it is for Jira to link, one glued to what follows gets
  its `://` escaped. Read by jira2markdown after its input is made safe (_prepare_wiki): what Jira
  shows as text stays text (`<`, `>`, backticks, `1.` at a line start, escaped characters). Both
  breaks are written as a newline (` \\\\ ` inside emphasis), so a hard break reads back as a soft
  one. An ordered list loses its first number; a list nested in a list of the other kind takes the
  outer kind from the third level on; blocks other than paragraphs and lists in a list item become
  lines of the item's text; quotes in quotes are lifted out. Emphasis, strong and strikethrough
  touching a letter or digit outside them (inside a word, or glued to another mark) cannot be written
  and become plain text. A code block whose language is not letters, digits, `#` or `+` is written as
  {noformat} (no language), as is one without a language: jira2markdown reads a bare {code} as Java,
  as Jira shows it. Images become links; a link whose URL is not http(s), ftp or a plain mailto
  becomes its text. Underline, sub/superscript, citations and colour read as plain text, tables as
  their rows.
- Idempotent: for every format f and Markdown m, with once = to_markdown(from_markdown(m, f), f),
  to_markdown(from_markdown(once, f), f) == once; and to_markdown(c, "markdown") == c for all canonical
  c (anything to_markdown returns). The engine compares values to detect edits: a conversion that
  drifted on each round trip would look like an edit and echo forever.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from jira2markdown.elements import MarkupElements
from jira2markdown.markup.advanced import Code, Noformat
from jira2markdown.markup.base import AbstractMarkup
from jira2markdown.markup.text_effects import Monospaced
from markdown_it import MarkdownIt
from markdown_it.common.utils import isMdAsciiPunct, isPunctChar, isWhiteSpace
from markdown_it.token import Token
from markdownify import ATX, BACKSLASH, MarkdownConverter, chomp, strip_pre
from pyparsing import Forward, ParserElement, ParseResults, Regex

FORMATS = ("markdown", "html", "adf", "jira_wiki")

_PARSER = MarkdownIt("commonmark").enable("strikethrough")
_HTML_WRITER = MarkdownIt("commonmark", {"breaks": True, "html": False}).enable("strikethrough")

_BREAKS = ("softbreak", "hardbreak")
_DELIMITED = {"em": "*", "strong": "**", "s": "~~"}
_LISTS = ("bullet_list", "ordered_list")
_MAX_LIST_NUMBER = 999_999_999  # CommonMark reads at most nine digits as a list number
_LANGUAGE = re.compile(r"[\w#+.-]+")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# A URL in running text, as jira2markdown takes it: verbatim, up to the next whitespace.
_BARE_URL = re.compile(r"(?:https?|ftp)://\S+", re.IGNORECASE)


def to_markdown(value: Any, source_format: str) -> str:
    """A tool's rich text (a str, or a dict for ADF) as canonical Markdown."""
    reader = _READERS[_known(source_format)]
    if value is None or value == "":
        return ""
    if isinstance(value, dict | list):
        reader = _read_adf  # a Jira Cloud answer, whatever the format named
    elif not isinstance(value, str):
        value = str(value)
    return _write_markdown(_tidy_blocks(reader(value)))


def from_markdown(text: str, target_format: str) -> str | dict:
    """Canonical Markdown in a tool's form: a str, or an ADF document dict for "adf"."""
    writer = _WRITERS[_known(target_format)]
    return writer(_tidy_blocks(_read_markdown(text if isinstance(text, str) else str(text or ""))))


def _known(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown rich text format {name!r}; known formats: {', '.join(FORMATS)}")
    return name


@dataclass
class _Node:
    """One element of a document: what every reader builds and every writer walks.

    Kinds are markdown-it's names. Blocks: paragraph, heading, bullet_list, ordered_list, list_item,
    blockquote, code_block, hr. Inline: text, softbreak, hardbreak, em, strong, s, link, image (its
    children are the alt text), code_inline.
    """

    kind: str
    children: list[_Node] = field(default_factory=list)
    text: str = ""  # text, code_inline and code_block
    href: str = ""  # link and image
    number: int = 0  # a heading's level, an ordered list's first number
    language: str = ""  # code_block


# Markdown in: markdown-it tokens -> tree.


def _read_markdown(text: str) -> list[_Node]:
    document = _Node("document")
    open_nodes = [document]
    for token in _PARSER.parse(text):
        parent = open_nodes[-1]
        if token.nesting == 1:
            node = _Node(token.type.removesuffix("_open"))
            if node.kind == "heading":
                node.number = int(token.tag[1:])
            elif node.kind == "ordered_list":
                node.number = int(token.attrs.get("start", 1))
            parent.children.append(node)
            open_nodes.append(node)
        elif token.nesting == -1:
            open_nodes.pop()
        elif token.type == "inline":
            parent.children.extend(_read_markdown_inline(token.children or []))
        elif token.type in ("fence", "code_block"):
            parent.children.append(_Node("code_block", text=token.content, language=token.info))
        elif token.type == "hr":
            parent.children.append(_Node("hr"))
        elif token.type == "html_block":
            parent.children.extend(_read_html(token.content))
    return document.children


def _read_markdown_inline(tokens: list[Token]) -> list[_Node]:
    root = _Node("inline")
    open_nodes = [root]
    for token in tokens:
        parent = open_nodes[-1]
        if token.nesting == 1:
            node = _Node(token.type.removesuffix("_open"), href=str(token.attrs.get("href", "")))
            parent.children.append(node)
            open_nodes.append(node)
        elif token.nesting == -1:
            open_nodes.pop()
        elif token.type == "image":
            alt = _read_markdown_inline(token.children or [])
            parent.children.append(_Node("image", alt, href=str(token.attrs.get("src", ""))))
        elif token.type in ("text", "code_inline"):
            parent.children.append(_Node(token.type, text=token.content))
        elif token.type in _BREAKS:
            parent.children.append(_Node(token.type))
        elif token.type == "html_inline" and _HTML_BREAK.fullmatch(token.content):
            parent.children.append(_Node("hardbreak"))  # as GitHub shows it; other inline tags show nothing
    return root.children


# HTML in: markdownify, set up for the canonical form, then the Markdown reader.


class _HtmlToMarkdown(MarkdownConverter):
    """markdownify with ATX headings, `-` bullets, `*` emphasis, `\\` breaks and every Markdown
    character in text escaped (so text such as `<div>` stays text); URLs are encoded as CommonMark
    encodes them, and a link to an unsafe URL keeps only its text."""

    def __init__(self):
        super().__init__(
            heading_style=ATX,
            bullets="-",
            strong_em_symbol="*",
            newline_style=BACKSLASH,
            escape_misc=True,
        )

    def escape(self, text, parent_tags):
        escaped = super().escape(text, parent_tags)
        # A `!` ending a text is not escaped by markdownify, and before a link it would make an image.
        return escaped[:-1] + "\\!" if escaped.endswith("!") else escaped

    def convert_a(self, el, text, parent_tags):
        href = el.get("href") or ""
        prefix, suffix, text = chomp(text)
        if "_noformat" in parent_tags or not href or not _PARSER.validateLink(href):
            return f"{prefix}{text}{suffix}"
        return (
            f"{prefix}[{text}]({_markdown_destination(_PARSER.normalizeLink(href))}){suffix}" if text else ""
        )

    def convert_img(self, el, text, parent_tags):
        alt = self.escape(el.get("alt") or "", parent_tags)
        src = el.get("src") or ""
        if "_inline" in parent_tags or not _PARSER.validateLink(src):
            return alt
        return f"![{alt}]({_markdown_destination(_PARSER.normalizeLink(src))})"

    def convert_pre(self, el, text, parent_tags):  # markdownify always fences with three backticks
        code = strip_pre(text)
        return f"\n\n{_markdown_fenced_code(code, _html_code_language(el) or '')}\n\n" if code else ""

    def _no_text(self, el, text, parent_tags):
        return ""

    # Content a reader never sees (markdownify already drops <script> and <style>).
    convert_head = convert_template = convert_noscript = _no_text


def _html_code_language(pre) -> str | None:
    for element in (pre, pre.find("code")):
        for css_class in element.get("class", []) if element else []:
            if css_class.startswith(("language-", "lang-")):
                return css_class.split("-", 1)[1]
    return None


def _read_html(html: str) -> list[_Node]:
    try:
        # In a <div>, which converts to nothing, so that BeautifulSoup does not warn about HTML that is
        # only a URL or a file name.
        markdown = _HtmlToMarkdown().convert(f"<div>{html}</div>")
    except Exception:  # BeautifulSoup's parser rejects some broken markup (`<![=`): keep it as text
        return _plain_text(html)
    return _read_markdown(markdown)


# Jira wiki markup in: made safe for jira2markdown, then the Markdown reader.

# Where jira2markdown takes wiki text as it is: {code}, {noformat} and {{monospace}} (their opening brace
# not escaped), and a URL in running text (not a link's target, after `[` or `|` of link markup).
_WIKI_LITERAL = re.compile(
    r"(?<!\\)\{code(?::[^}]*)?\}.*?\{code\}"
    r"|(?<!\\)\{noformat(?::[^}]*)?\}.*?\{noformat\}"
    r"|(?<!\\)\{\{[^\n]*?\}\}"
    r"|(?P<url>(?:(?<![\[|])|(?<=\\[\[|]))" + _BARE_URL.pattern + ")",
    re.DOTALL | re.IGNORECASE,
)
_WIKI_ESCAPE = re.compile(r"\\\\|\\([!-/:-@\[-`{-~])")
_WIKI_LINE_MARKER = re.compile(r"(?:[*#-]+ +|bq\. +)?")


def _entity(character: str) -> str:
    return f"&#{ord(character)};"


def _prepare_wiki(text: str) -> str:
    """Wiki markup that jira2markdown turns into the Markdown Jira would show.

    jira2markdown passes text through, so what is text in Jira but markup in Markdown is replaced by an
    entity (which Markdown reads as the character): `<`, `>` and backticks, Markdown-only line starts
    (`1.`, `+`, `=`, ...), and Markdown characters in URLs it keeps verbatim. Wiki backslash escapes
    become entities too: jira2markdown reads `\\*x\\*` as bold. Lines lose their indentation and
    trailing whitespace, which Jira ignores but Markdown would read as code blocks and hard breaks.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    prepared = []
    position = 0
    for literal in _WIKI_LITERAL.finditer(text):
        prepared.append(_prepare_wiki_text(text[position : literal.start()], position == 0, last=False))
        url = literal.group("url")
        if url:
            prepared.append("".join(_entity(c) if c in "\\`*_[]<>~&" else c for c in url))
        else:
            prepared.append(literal.group())
        position = literal.end()
    prepared.append(_prepare_wiki_text(text[position:], position == 0, last=True))
    return "".join(prepared)


def _prepare_wiki_text(text: str, at_line_start: bool, last: bool) -> str:
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if number or at_line_start:
            line = line.lstrip()
        if number < len(lines) - 1 or last:
            line = line.rstrip()
        line = _WIKI_ESCAPE.sub(
            lambda escape: _entity(escape.group(1)) if escape.group(1) else escape.group(), line
        )
        line = line.replace("<", "&lt;").replace(">", "&gt;").replace("`", _entity("`"))
        if number or at_line_start:
            # The text after a wiki list or quote marker starts a line in Markdown too.
            marker = _WIKI_LINE_MARKER.match(line).end()
            line = line[:marker] + _without_markdown_line_start(line[marker:])
        lines[number] = line
    return "\n".join(lines)


def _without_markdown_line_start(line: str) -> str:
    """The line with the character that would begin a Markdown block (and no wiki one) as an entity."""
    if number := re.match(r"\d{1,9}(?=[.)](?:\s|$))", line):  # `1. text`: text in wiki, a list in Markdown
        position = number.end()
    elif re.match(r"\+(?:\s|$)|~~~|=+\s*$|-$|_[_\s]*$", line):  # a bullet, fence, underline or rule
        position = 0
    else:
        return line
    return line[:position] + _entity(line[position]) + line[position + 1 :]


class _WikiCode(Code):
    def action(self, tokens: ParseResults) -> str:  # jira2markdown's fence is always three backticks
        return _markdown_fenced_code(tokens.text.strip("\n"), tokens.lang or "Java")


class _WikiNoformat(Noformat):
    def action(self, tokens: ParseResults) -> str:
        return _markdown_fenced_code(tokens.text.strip("\n"), "")


class _WikiMonospaced(Monospaced):
    def action(self, tokens: ParseResults) -> str:  # jira2markdown's span is always one backtick
        return _markdown_code_span(tokens[0]) if tokens[0] else ""


class _WikiWords(AbstractMarkup):
    """Plain words, passed over in one step: jira2markdown tries every element at every character, and
    a page of plain text took a second. No element starts inside a run of letters, digits and the
    punctuation below, except a URL (where the run ends) and a heading or quote at a line start (the
    run's first character, where every element is tried first); none starts at a space or tab that
    does not begin a line."""

    @property
    def expr(self) -> ParserElement:
        word_character = r"""(?!(?:https?|ftp)://)(?:[^\W_]|[.,;:'"()/%=@$&])"""
        return Regex(rf"(?:{word_character}|(?<=[^\n])[ \t])+", re.IGNORECASE)


_THREAD = threading.local()


def _jira_wiki_grammar() -> ParserElement:
    """jira2markdown's grammar as its convert() builds it, but built once per thread: convert() builds it
    on every call, which takes a tenth of a second, and a grammar keeps list state while it parses.
    (Importing jira2markdown has set pyparsing's default whitespace to none, which the grammar needs.)"""
    grammar = getattr(_THREAD, "jira_wiki_grammar", None)
    if grammar is None:
        inline_markup, markup = Forward(), Forward()
        elements = MarkupElements()
        elements.replace(Code, _WikiCode)
        elements.replace(Noformat, _WikiNoformat)
        elements.replace(Monospaced, _WikiMonospaced)
        elements.append(_WikiWords)
        inline = [element for element in elements if element.is_inline_element]
        inline_markup <<= elements.expr(inline_markup, markup, {}, inline)
        markup <<= elements.expr(inline_markup, markup, {}, elements)
        grammar = _THREAD.jira_wiki_grammar = markup
    return grammar


def _read_jira_wiki(text: str) -> list[_Node]:
    prepared = _prepare_wiki(text)
    try:
        markdown = _jira_wiki_grammar().transform_string(prepared)
    except Exception:  # jira2markdown fails on some odd markup (a table row of one `|`): keep the text
        return _plain_text(text)
    return _read_markdown(markdown)


# ADF in: walk the JSON; whatever is missing or unknown gives its text.

_ADF_MARK_ORDER = ("link", "strong", "em", "s", "code")  # how marks are written, and nested when tied
_ADF_MARK_KINDS = {"strong": "strong", "em": "em", "strike": "s"}
_ADF_INLINE_TYPES = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status", "placeholder"}


def _read_adf(value: Any) -> list[_Node]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _plain_text(value)
    return _adf_blocks(value)


def _adf_list(value: Any) -> list[dict]:
    """The nodes of a content list: a lone node is a list of one, a bare value (a string) is text."""
    items = value if isinstance(value, list) else [value]
    return [
        item if isinstance(item, dict) else {"type": "text", "text": item}
        for item in items
        if item is not None
    ]


def _adf_attrs(node: dict) -> dict:
    attrs = node.get("attrs")
    return attrs if isinstance(attrs, dict) else {}


def _adf_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _adf_blocks(value: Any) -> list[_Node]:
    blocks: list[_Node] = []
    stray_inline: list[dict] = []  # inline nodes where blocks belong: they make a paragraph
    for node in _adf_list(value):
        kind = node.get("type")
        if kind in _ADF_INLINE_TYPES:
            stray_inline.append(node)
            continue
        if stray_inline:
            blocks.append(_Node("paragraph", _adf_inline(stray_inline)))
            stray_inline = []
        blocks.extend(_adf_block(node, kind))
    if stray_inline:
        blocks.append(_Node("paragraph", _adf_inline(stray_inline)))
    return blocks


def _adf_block(node: dict, kind: Any) -> list[_Node]:
    content = node.get("content")
    attrs = _adf_attrs(node)
    if kind == "paragraph":
        return [_Node("paragraph", _adf_inline(content))]
    if kind == "heading":
        return [_Node("heading", _adf_inline(content), number=_adf_int(attrs.get("level"), 1))]
    if kind in ("bulletList", "orderedList", "taskList", "decisionList"):
        items = [_Node("list_item", _adf_item_blocks(item)) for item in _adf_list(content)]
        if kind == "orderedList":
            return [_Node("ordered_list", items, number=_adf_int(attrs.get("order"), 1))]
        return [_Node("bullet_list", items)]
    if kind == "codeBlock":
        language = attrs.get("language")
        return [
            _Node(
                "code_block",
                text=_adf_plain_text(content),
                language=language if isinstance(language, str) else "",
            )
        ]
    if kind in ("blockquote", "panel"):
        return [_Node("blockquote", _adf_blocks(content))]
    if kind == "rule":
        return [_Node("hr")]
    if kind in ("blockCard", "embedCard"):
        return [_Node("paragraph", _adf_inline([{**node, "type": "inlineCard"}]))]
    if kind == "media":
        return [_Node("paragraph", _adf_media(attrs))]
    if kind in ("expand", "nestedExpand") and isinstance(attrs.get("title"), str):
        return [_Node("paragraph", [_Node("text", text=attrs["title"])]), *_adf_blocks(content)]
    if content is None and isinstance(node.get("text"), str):
        return [_Node("paragraph", _adf_inline([node]))]
    return _adf_blocks(content)  # a table, a layout, a media group, an unknown node: its content


def _adf_item_blocks(item: dict) -> list[_Node]:
    if item.get("type") in ("taskItem", "decisionItem"):  # their content is inline
        return [_Node("paragraph", _adf_inline(item.get("content")))]
    if item.get("type") == "listItem":
        return _adf_blocks(item.get("content"))
    return _adf_blocks(item)


def _adf_media(attrs: dict) -> list[_Node]:
    url, alt = attrs.get("url"), attrs.get("alt")
    alt_text = [_Node("text", text=alt)] if isinstance(alt, str) and alt else []
    if isinstance(url, str) and url:
        return [_Node("link", alt_text or [_Node("text", text=url)], href=url)]
    return alt_text


def _adf_plain_text(value: Any) -> str:
    texts = []
    for node in _adf_list(value):
        if isinstance(node.get("text"), str):
            texts.append(node["text"])
        elif node.get("type") == "hardBreak":
            texts.append("\n")
        texts.append(_adf_plain_text(node.get("content")))
    return "".join(texts)


def _adf_inline(value: Any) -> list[_Node]:
    """Inline ADF nodes as a tree: ADF puts marks on each text node, the tree nests them."""
    runs: list[tuple[_Node, tuple]] = []
    for node in _adf_list(value):
        runs.extend(_adf_runs(node))
    return _nest_marks(runs)


def _adf_runs(node: dict) -> list[tuple[_Node, tuple]]:
    """The leaves of one inline node, each with the marks (("strong",), ("link", href)...) it carries."""
    kind = node.get("type")
    attrs = _adf_attrs(node)
    if kind == "hardBreak":
        return [(_Node("hardbreak"), ())]
    if kind == "inlineCard" and isinstance(attrs.get("url"), str):
        return [(_Node("text", text=attrs["url"]), (("link", attrs["url"]),))]
    if kind == "date":
        return [(_Node("text", text=_adf_date(attrs.get("timestamp"))), ())]
    if kind == "emoji":
        emoji = attrs.get("text") or attrs.get("shortName")
        return [(_Node("text", text=emoji), ())] if isinstance(emoji, str) else []
    if kind != "text" and "text" not in node:
        text = attrs.get("text")
        if isinstance(text, str):  # a mention, a status, an unknown node with text
            return [(_Node("text", text=text), ())]
        return [run for child in _adf_list(node.get("content")) for run in _adf_runs(child)]
    text = node.get("text")  # a text node, or an unknown one that has text
    text = text if isinstance(text, str) else "" if text is None else str(text)
    marks, is_code = _adf_marks(node.get("marks"))
    if is_code:
        return [(_Node("code_inline", text=text), marks)]
    return [(leaf, marks) for leaf in _text_with_breaks(text)]


def _adf_marks(value: Any) -> tuple[tuple, bool]:
    marks = []
    is_code = False
    for mark in value if isinstance(value, list) else []:
        kind = mark.get("type") if isinstance(mark, dict) else None
        if kind == "code":
            is_code = True
        elif kind in _ADF_MARK_KINDS:
            marks.append((_ADF_MARK_KINDS[kind],))
        elif kind == "link" and isinstance(_adf_attrs(mark).get("href"), str):
            marks.append(("link", _adf_attrs(mark)["href"]))
    return tuple(dict.fromkeys(marks)), is_code


def _adf_date(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(int(timestamp) / 1000, UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return "" if timestamp is None else str(timestamp)


def _nest_marks(runs: list[tuple[_Node, tuple]]) -> list[_Node]:
    """Nest marked leaves: a mark stays open while the following leaves carry it too, and of the marks
    a leaf opens, the one that lasts longest is outermost."""
    root: list[_Node] = []
    open_marks: list[tuple[tuple, _Node]] = []
    for index, (leaf, marks) in enumerate(runs):
        kept = 0
        while kept < len(open_marks) and open_marks[kept][0] in marks:
            kept += 1
        del open_marks[kept:]
        held = {mark for mark, _ in open_marks}

        def lasts(mark, index=index):
            length = 0
            while index + length < len(runs) and mark in runs[index + length][1]:
                length += 1
            return -length, _ADF_MARK_ORDER.index(mark[0])

        for mark in sorted((mark for mark in marks if mark not in held), key=lasts):
            node = _Node(mark[0], href=mark[1] if mark[0] == "link" else "")
            (open_marks[-1][1].children if open_marks else root).append(node)
            open_marks.append((mark, node))
        (open_marks[-1][1].children if open_marks else root).append(leaf)
    return root


def _plain_text(text: str) -> list[_Node]:
    """Text taken as it is: paragraphs between blank lines, line breaks within them."""
    return [_Node("paragraph", _text_with_breaks(paragraph)) for paragraph in re.split(r"\n[ \t]*\n", text)]


def _text_with_breaks(text: str) -> list[_Node]:
    nodes: list[_Node] = []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text)):
        if number:
            nodes.append(_Node("hardbreak"))
        if line:
            nodes.append(_Node("text", text=line))
    return nodes


_READERS: dict[str, Callable[[Any], list[_Node]]] = {
    "markdown": _read_markdown,
    "html": _read_html,
    "adf": _read_adf,
    "jira_wiki": _read_jira_wiki,
}


# The tidy tree: what every writer can rely on.


def _tidy_blocks(blocks: list[_Node]) -> list[_Node]:
    tidy = []
    for block in blocks:
        if block.kind == "heading":
            children = _trim_edges(_tidy_inline(_without_breaks(block.children)))
            if children:
                tidy.append(_Node("heading", children, number=min(max(block.number, 1), 6)))
        elif block.kind == "paragraph":
            children = _trim_edges(_tidy_inline(block.children))
            if children:
                tidy.append(_Node("paragraph", children))
        elif block.kind in _LISTS:
            items = [_Node("list_item", _tidy_blocks(item.children)) for item in block.children]
            highest_first_number = _MAX_LIST_NUMBER - len(items) + 1
            if items:
                tidy.append(_Node(block.kind, items, number=min(max(block.number, 0), highest_first_number)))
        elif block.kind == "blockquote":
            children = _tidy_blocks(block.children)
            if children:
                tidy.append(_Node("blockquote", children))
        elif block.kind == "code_block":
            code = _tidy_code(block.text)
            if code:
                language = (block.language.split() or [""])[0]
                tidy.append(
                    _Node("code_block", text=code, language=language if _LANGUAGE.fullmatch(language) else "")
                )
        elif block.kind == "hr":
            tidy.append(block)
    return tidy


def _tidy_code(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n").replace("\x00", "\ufffd")


def _without_breaks(nodes: list[_Node]) -> list[_Node]:
    """A heading is one line: its breaks become spaces."""
    return [
        _Node("text", text=" ")
        if node.kind in _BREAKS
        else replace(node, children=_without_breaks(node.children))
        for node in nodes
    ]


def _tidy_inline(nodes: list[_Node], inside: frozenset[str] = frozenset()) -> list[_Node]:
    """`inside`: the emphasis kinds around these nodes. Emphasis inside emphasis of its kind looks the
    same and goes (`*_x_*` would be written `**x**`, which is strong)."""
    tidy: list[_Node] = []
    for node in nodes:
        if node.kind == "text":
            tidy.append(_Node("text", text=_collapse_spaces(node.text.replace("\x00", "\ufffd"))))
        elif node.kind == "code_inline":
            if node.text:
                tidy.append(_Node("code_inline", text=re.sub(r"\r\n|\r|\n", " ", node.text)))
        elif node.kind in _DELIMITED and node.kind in inside:
            tidy.extend(_tidy_inline(node.children, inside))
        elif node.kind in _DELIMITED:
            lead, core, trail = _split_outer_whitespace(_tidy_inline(node.children, inside | {node.kind}))
            tidy.extend([*lead, _Node(node.kind, core), *trail] if core else [*lead, *trail])
        elif node.kind in ("link", "image"):
            children = _tidy_inline(node.children, inside)
            href = _PARSER.normalizeLink(node.href)
            if not node.href or not _PARSER.validateLink(node.href):
                tidy.extend(children)
            else:
                if node.kind == "link" and not _has_text(children):
                    children = [_Node("text", text=href)]
                tidy.append(_Node(node.kind, children, href=href))
        elif node.kind in _BREAKS:
            tidy.append(_Node(node.kind))
    return _merge_neighbours(_strip_around_breaks(_merge_neighbours(tidy)))


def _collapse_spaces(text: str) -> str:
    """Runs of spaces and tabs show as one space everywhere (HTML collapses them)."""
    return re.sub(r"[ \t]+", " ", text)


def _has_text(nodes: list[_Node]) -> bool:
    return any(node.text.strip() or _has_text(node.children) for node in nodes)


def _split_outer_whitespace(nodes: list[_Node]) -> tuple[list[_Node], list[_Node], list[_Node]]:
    """Whitespace and breaks at both ends, split off: CommonMark cannot open or close emphasis there."""
    core = list(nodes)
    lead: list[_Node] = []
    trail: list[_Node] = []
    while core and (core[0].kind in _BREAKS or (core[0].kind == "text" and core[0].text[:1].isspace())):
        first = core.pop(0)
        kept = first.text.lstrip()
        lead.append(
            first if first.kind in _BREAKS else _Node("text", text=first.text[: len(first.text) - len(kept)])
        )
        if kept:
            core.insert(0, _Node("text", text=kept))
    while core and (core[-1].kind in _BREAKS or (core[-1].kind == "text" and core[-1].text[-1:].isspace())):
        last = core.pop()
        kept = last.text.rstrip()
        trail.insert(0, last if last.kind in _BREAKS else _Node("text", text=last.text[len(kept) :]))
        if kept:
            core.append(_Node("text", text=kept))
    return lead, core, trail


def _merge_neighbours(nodes: list[_Node]) -> list[_Node]:
    """Neighbours of one kind become one node (`*a**b*` is not two emphases); empty text goes."""
    merged: list[_Node] = []
    for node in nodes:
        if node.kind == "text" and not node.text:
            continue
        previous = merged[-1] if merged else None
        if (
            previous
            and {previous.kind, node.kind} <= {*_BREAKS}
            and "softbreak" in (previous.kind, node.kind)
        ):
            # A soft break next to another break adds nothing (and a hard break then a soft one would
            # write a blank line, which ends the paragraph).
            merged[-1] = _Node("hardbreak")
            continue
        if previous and previous.kind == node.kind and previous.href == node.href:
            if node.kind == "text":
                merged[-1] = _Node("text", text=_collapse_spaces(previous.text + node.text))
                continue
            if node.kind == "code_inline":
                merged[-1] = _Node("code_inline", text=previous.text + node.text)
                continue
            if node.kind in (*_DELIMITED, "link"):
                merged[-1] = replace(previous, children=_merge_neighbours(previous.children + node.children))
                continue
        merged.append(node)
    return merged


def _strip_around_breaks(nodes: list[_Node]) -> list[_Node]:
    """No spaces or tabs at the end or start of a line, as CommonMark reads them."""
    for index, node in enumerate(nodes):
        if node.kind != "text":
            continue
        if index + 1 < len(nodes) and nodes[index + 1].kind in _BREAKS:
            node.text = node.text.rstrip(" \t")
        if index > 0 and nodes[index - 1].kind in _BREAKS:
            node.text = node.text.lstrip(" \t")
    return nodes


def _trim_edges(nodes: list[_Node]) -> list[_Node]:
    """A paragraph or heading starts and ends with text: no breaks, spaces or tabs at its edges."""
    nodes = list(nodes)
    while nodes and (
        nodes[0].kind in _BREAKS or (nodes[0].kind == "text" and not nodes[0].text.strip(" \t"))
    ):
        nodes.pop(0)
    while nodes and (
        nodes[-1].kind in _BREAKS or (nodes[-1].kind == "text" and not nodes[-1].text.strip(" \t"))
    ):
        nodes.pop()
    if nodes and nodes[0].kind == "text":
        nodes[0] = _Node("text", text=nodes[0].text.lstrip(" \t"))
    if nodes and nodes[-1].kind == "text":
        nodes[-1] = _Node("text", text=nodes[-1].text.rstrip(" \t"))
    return nodes


# Markdown out.


def _write_markdown(blocks: list[_Node]) -> str:
    return _markdown_blocks(blocks, "\n\n")


def _markdown_blocks(blocks: list[_Node], separator: str) -> str:
    written = []
    previous_kind, alternate = "", False
    for block in blocks:
        # A list right after a list of its kind takes the other marker, or Markdown would join them.
        alternate = block.kind in _LISTS and block.kind == previous_kind and not alternate
        written.append(_markdown_block(block, alternate))
        previous_kind = block.kind
    return separator.join(written)


def _markdown_block(block: _Node, alternate: bool) -> str:
    if block.kind == "paragraph":
        return _markdown_inline(block.children, at_line_start=True)
    if block.kind == "heading":
        text = _markdown_inline(block.children, at_line_start=False)
        if text.endswith("#"):  # or it would read as the closing sequence
            text = text[:-1] + "\\#"
        return f"{'#' * block.number} {text}"
    if block.kind in _LISTS:
        return _markdown_list(block, alternate)
    if block.kind == "blockquote":
        lines = _markdown_blocks(block.children, "\n\n").split("\n")
        return "\n".join(f"> {line}" if line else ">" for line in lines)
    if block.kind == "code_block":
        return _markdown_fenced_code(block.text, block.language)
    return "___"  # hr: after a list marker `---` and `***` could read as one rule (`- ---`, `* ***`)


def _markdown_fenced_code(code: str, language: str) -> str:
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", code)), default=0))
    return f"{fence}{language}\n{code}\n{fence}"


def _markdown_list(block: _Node, alternate: bool) -> str:
    tight = _is_tight(block)
    items = []
    for offset, item in enumerate(block.children):
        if block.kind == "ordered_list":
            marker = f"{block.number + offset}{')' if alternate else '.'}"
        else:
            marker = "*" if alternate else "-"
        lines = _markdown_blocks(item.children, "\n" if tight else "\n\n").split("\n")
        if item.children and item.children[0].kind in _LISTS:
            lines.insert(0, "")  # on the marker's line, `- - -` (empty items) would read as a rule
        indent = " " * (len(marker) + 1)
        first = f"{marker} {lines[0]}" if lines[0] else marker
        items.append("\n".join([first, *(indent + line if line else "" for line in lines[1:])]))
    return ("\n" if tight else "\n\n").join(items)


def _is_tight(block: _Node) -> bool:
    """Tight unless an item holds a block after its first that cannot follow without a blank line. Only a
    list that may interrupt a paragraph can: a bullet list, or one starting at 1, whose first item starts
    on its marker's line (it is not empty and does not start with a list)."""
    return all(
        child.kind in _LISTS
        and (child.kind == "bullet_list" or child.number == 1)
        and child.children[0].children
        and child.children[0].children[0].kind not in _LISTS
        for item in block.children
        for child in item.children[1:]
    )


def _markdown_inline(nodes: list[_Node], at_line_start: bool) -> str:
    written: list[str] = []
    _write_markdown_inline(nodes, written, at_line_start, after="")
    return "".join(written)


def _write_markdown_inline(
    nodes: list[_Node], written: list[str], escape_line_starts: bool, after: str
) -> None:
    """Append the nodes' Markdown to `written`; `after` is the character that will follow them."""
    for index, node in enumerate(nodes):
        following = _markdown_leading_character(nodes[index + 1]) if index + 1 < len(nodes) else after
        if node.kind == "text":
            at_line_start = escape_line_starts and (not written or written[-1].endswith("\n"))
            text = _escape_markdown(node.text, at_line_start)
            if text.endswith("!") and index + 1 < len(nodes) and nodes[index + 1].kind == "link":
                text = text[:-1] + "\\!"  # or it would read as an image
            written.append(text)
        elif node.kind == "code_inline":
            written.append(_markdown_code_span(node.text))
        elif node.kind in _DELIMITED:
            delimiter = _DELIMITED[node.kind]
            preceding = _character_before_delimiters(written, delimiter[0])
            first = _markdown_edge_character(node.children[0], 0)
            last = _markdown_edge_character(node.children[-1], -1)
            if _opens(preceding, first) and _closes(last, following):
                written.append(delimiter)
                _write_markdown_inline(node.children, written, escape_line_starts, after=delimiter[0])
                written.append(delimiter)
            else:  # CommonMark cannot open or close emphasis here (glued to a word): plain text
                _write_markdown_inline(node.children, written, escape_line_starts, after=following)
        elif node.kind in ("link", "image"):
            written.append("![" if node.kind == "image" else "[")
            _write_markdown_inline(node.children, written, escape_line_starts, after="]")
            written.append(f"]({_markdown_destination(node.href)})")
        elif node.kind == "softbreak":
            written.append("\n")
        elif node.kind == "hardbreak":
            written.append("\\\n")


def _character_before_delimiters(written: list[str], character: str) -> str:
    """The character before the delimiter run a new delimiter would join (`*a*` then `**b**` make one
    run, `***`): CommonMark tells whether a run opens from the characters around the whole run."""
    index = len(written)
    while index and set(written[index - 1]) == {character}:  # a delimiter (text never writes one bare)
        index -= 1
    return written[index - 1][-1:] if index else ""


def _markdown_edge_character(node: _Node, end: int) -> str:
    """The first (end=0) or last (end=-1) character a node is written with, inside a delimiter pair."""
    if node.kind == "text":
        return node.text[end]
    if node.kind in _DELIMITED:  # nested at the edge of emphasis, it always keeps its delimiters
        return _DELIMITED[node.kind][0]
    edges = {"code_inline": "`", "link": "[)", "image": "!)", "softbreak": "\n", "hardbreak": "\\\n"}
    return edges[node.kind][end]


def _markdown_leading_character(node: _Node) -> str:
    """The character a following node may start with: for emphasis, its content's (it may be plain)."""
    if node.kind in _DELIMITED:
        return _markdown_leading_character(node.children[0])
    return _markdown_edge_character(node, 0)


def _is_whitespace(character: str) -> bool:
    return not character or isWhiteSpace(ord(character))  # the edge of a line counts as whitespace


def _is_punctuation(character: str) -> bool:
    return bool(character) and (isMdAsciiPunct(ord(character)) or isPunctChar(character))


def _opens(preceding: str, first: str) -> bool:
    """A left-flanking delimiter run, as markdown-it tells (`*` and `~~` may open inside a word)."""
    return not _is_whitespace(first) and (
        not _is_punctuation(first) or _is_whitespace(preceding) or _is_punctuation(preceding)
    )


def _closes(last: str, following: str) -> bool:
    """A right-flanking delimiter run."""
    return not _is_whitespace(last) and (
        not _is_punctuation(last) or _is_whitespace(following) or _is_punctuation(following)
    )


_MARKDOWN_LINE_START = re.compile(r"^(?:[#>+=~-]|\d{1,9}(?=[.)]))")


def _escape_markdown(text: str, at_line_start: bool) -> str:
    """Backslashes before the characters Markdown would read as markup; `_` inside a word cannot be."""
    escaped = []
    for index, character in enumerate(text):
        inside_word = 0 < index < len(text) - 1 and text[index - 1].isalnum() and text[index + 1].isalnum()
        if (
            character in "\\`*[]<"
            or (character == "_" and not inside_word)
            or (
                character == "~"
                and (text[index - 1 : index] in ("", "~") or text[index + 1 : index + 2] in ("", "~"))
            )
            or (character == "&" and _ENTITY.match(text, index))
        ):
            escaped.append("\\")
        escaped.append(character)
    result = "".join(escaped)
    if at_line_start and (start := _MARKDOWN_LINE_START.match(result)):
        result = start.group() + "\\" + result[start.end() :] if start.group()[0].isdigit() else "\\" + result
    return result


def _markdown_code_span(code: str) -> str:
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", code)), default=0))
    if code[0] == "`" or code[-1] == "`" or (code[0] == " " and code[-1] == " " and code.strip(" ")):
        code = f" {code} "  # CommonMark strips one space from each side
    return f"{fence}{code}{fence}"


def _markdown_destination(url: str) -> str:
    url = re.sub(r"[()\\]", lambda match: "\\" + match.group(), url)
    return _ENTITY.sub(lambda match: "\\" + match.group(), url)


# HTML out: markdown-it renders the canonical Markdown.


def _write_html(blocks: list[_Node]) -> str:
    return _HTML_WRITER.render(_write_markdown(blocks)).strip()


# ADF out.


def _write_adf(blocks: list[_Node]) -> dict:
    return {"type": "doc", "version": 1, "content": _adf_out_blocks(blocks, "doc")}


def _adf_out_blocks(blocks: list[_Node], inside: str) -> list[dict]:
    """ADF blocks for a document, a list item or a quote (the last two hold no heading, quote or rule)."""
    written: list[dict] = []
    for block in blocks:
        if block.kind == "paragraph" or (block.kind == "heading" and inside != "doc"):
            written.append({"type": "paragraph", "content": _adf_out_inline(block.children, ())})
        elif block.kind == "heading":
            content = _adf_out_inline(block.children, ())
            written.append({"type": "heading", "attrs": {"level": block.number}, "content": content})
        elif block.kind in _LISTS:
            written.append(_adf_out_list(block))
        elif block.kind == "blockquote" and inside == "doc":
            written.append({"type": "blockquote", "content": _adf_out_blocks(block.children, "blockquote")})
        elif block.kind == "blockquote":
            written.extend(_adf_out_blocks(block.children, inside))
        elif block.kind == "code_block":
            code: dict[str, Any] = {"type": "codeBlock", "content": [{"type": "text", "text": block.text}]}
            if block.language:
                code["attrs"] = {"language": block.language}
            written.append(code)
        elif block.kind == "hr" and inside == "doc":
            written.append({"type": "rule"})
    return written


def _adf_out_list(block: _Node) -> dict:
    items = []
    for item in block.children:
        content = _adf_out_blocks(item.children, "list_item")
        if not content or content[0]["type"] not in ("paragraph", "codeBlock"):
            content.insert(0, {"type": "paragraph", "content": []})  # ADF: an item starts with one
        items.append({"type": "listItem", "content": content})
    if block.kind == "bullet_list":
        return {"type": "bulletList", "content": items}
    written = {"type": "orderedList", "content": items}
    if block.number != 1:
        written["attrs"] = {"order": block.number}
    return written


def _adf_out_inline(nodes: list[_Node], marks: tuple) -> list[dict]:
    written: list[dict] = []
    for node in nodes:
        if node.kind == "text":
            written.append(_adf_text(node.text, marks))
        elif node.kind == "code_inline":  # ADF: code combines with a link only
            link_marks = [mark for mark in marks if mark[0] == "link"]
            written.append(_adf_text(node.text, (*link_marks, ("code",))))
        elif node.kind in _DELIMITED:
            written.extend(_adf_out_inline(node.children, (*marks, (node.kind,))))
        elif node.kind == "link":
            written.extend(_adf_out_inline(node.children, _with_link(marks, node.href)))
        elif node.kind == "image":  # ADF has no inline picture from a URL: a link to it
            alt = node.children or [_Node("text", text=node.href)]
            inside_link = any(mark[0] == "link" for mark in marks)
            written.extend(_adf_out_inline(alt, marks if inside_link else _with_link(marks, node.href)))
        elif node.kind in _BREAKS:
            written.append({"type": "hardBreak"})
    merged: list[dict] = []
    for node in written:
        if (
            merged
            and node["type"] == merged[-1]["type"] == "text"
            and node.get("marks") == merged[-1].get("marks")
        ):
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + node["text"]}
        else:
            merged.append(node)
    return merged


def _with_link(marks: tuple, href: str) -> tuple:
    return (*(mark for mark in marks if mark[0] != "link"), ("link", href))


_ADF_MARK_TYPES = {"strong": "strong", "em": "em", "s": "strike", "code": "code"}


def _adf_text(text: str, marks: tuple) -> dict:
    written: dict[str, Any] = {"type": "text", "text": text}
    unique = sorted(dict.fromkeys(marks), key=lambda mark: _ADF_MARK_ORDER.index(mark[0]))
    if unique:
        written["marks"] = [
            {"type": "link", "attrs": {"href": mark[1]}}
            if mark[0] == "link"
            else {"type": _ADF_MARK_TYPES[mark[0]]}
            for mark in unique
        ]
    return written


# Jira wiki markup out.

_WIKI_DELIMITERS = {"strong": "*", "em": "_", "s": "-"}
_WIKI_CODE_LANGUAGE = re.compile(r"[A-Za-z0-9#+]+")  # what jira2markdown reads after {code:
_WIKI_EMAIL = re.compile(r"mailto:[\w@.+-]+", re.ASCII)


def _write_jira_wiki(blocks: list[_Node]) -> str:
    return "\n\n".join(_wiki_block(block) for block in blocks)


def _wiki_block(block: _Node) -> str:
    if block.kind == "paragraph":
        return _wiki_inline(block.children, line_start=True)
    if block.kind == "heading":
        return f"h{block.number}. {_wiki_inline(block.children)}"
    if block.kind in _LISTS:
        return "\n".join(_wiki_list_lines(block, ""))
    if block.kind == "blockquote":  # {quote} does not nest
        return (
            "{quote}\n"
            + "\n\n".join(_wiki_block(child) for child in _lift_quotes(block.children))
            + "\n{quote}"
        )
    if block.kind == "code_block":
        if block.language and _WIKI_CODE_LANGUAGE.fullmatch(block.language):
            return f"{{code:{block.language}}}\n{block.text}\n{{code}}"
        return f"{{noformat}}\n{block.text}\n{{noformat}}"
    return "----"


def _lift_quotes(blocks: list[_Node]) -> list[_Node]:
    return [
        lifted
        for block in blocks
        for lifted in (_lift_quotes(block.children) if block.kind == "blockquote" else [block])
    ]


def _wiki_list_lines(block: _Node, outer_prefix: str) -> list[str]:
    # jira2markdown reads a prefix such as `#**`: after the first level, one kind only. So from the third
    # level on a list takes the kind of the list it is in.
    symbol = outer_prefix[-1] if len(outer_prefix) > 1 else "#" if block.kind == "ordered_list" else "*"
    prefix = outer_prefix + symbol
    lines = []
    for item in block.children:
        text = "\n".join(_wiki_item_text(child) for child in item.children if child.kind not in _LISTS)
        if text:
            lines.append(f"{prefix} {text}")
        for child in item.children:
            if child.kind in _LISTS:
                lines.extend(_wiki_list_lines(child, prefix))
    return lines


def _wiki_item_text(block: _Node) -> str:
    """A block inside a list item, as lines of the item's text (wiki items hold nothing else)."""
    if block.kind in ("paragraph", "heading"):
        return _wiki_inline(block.children, line_start=True)
    if block.kind == "code_block":
        lines = [line for line in block.text.split("\n") if line.strip()]
        return "\n".join(_escape_wiki(line, "", "", at_line_start=True) for line in lines)
    return "\n".join(_wiki_item_text(child) for child in _lift_quotes(block.children))


def _wiki_inline(
    nodes: list[_Node], *, line_start: bool = False, before: str = "", after: str = "", marks=()
) -> str:
    written = ""
    for index, node in enumerate(nodes):
        following = _wiki_leading_character(nodes[index + 1]) if index + 1 < len(nodes) else after
        preceding = written[-1] if written else before
        at_line_start = (line_start and not written) or written.endswith("\n")
        written += _wiki_node(node, preceding, following, marks, at_line_start)
    return written


def _wiki_node(node: _Node, preceding: str, following: str, marks: tuple, at_line_start: bool) -> str:
    if node.kind == "text":
        return _escape_wiki(node.text, preceding, following, at_line_start)
    if node.kind in _BREAKS:  # a newline would end the emphasis; spaces keep `\\` off a URL before it
        return " \\\\ " if marks else "\n"
    if node.kind == "code_inline":
        if _wiki_code_fits(node.text):
            return "{{" + node.text + "}}"
        return _escape_wiki(node.text, preceding, following, at_line_start)
    if node.kind == "em" and len(node.children) == 1 and node.children[0].kind == "strong":
        # `_*x*_` does not read back as bold: write `*_x_*`, the same look.
        node = _Node("strong", [_Node("em", node.children[0].children)])
    if node.kind in _WIKI_DELIMITERS:
        delimiter = _WIKI_DELIMITERS[node.kind]
        if node.kind in marks or not (_wiki_boundary(preceding) and _wiki_boundary(following)):
            return _wiki_inline(
                node.children, line_start=at_line_start, before=preceding, after=following, marks=marks
            )
        inner = _wiki_inline(node.children, before=delimiter, after=delimiter, marks=(*marks, node.kind))
        return delimiter + inner + delimiter
    url = node.href
    text_nodes = node.children if node.kind == "link" else node.children or [_Node("text", text=url)]
    if "link" in marks or not _wiki_url_fits(url):
        return _wiki_inline(
            text_nodes, line_start=at_line_start, before=preceding, after=following, marks=marks
        )
    text = _wiki_inline(text_nodes, before="[", after="|", marks=(*marks, "link"))
    return f"[{url}]" if text == url else f"[{text}|{url}]"


def _wiki_leading_character(node: _Node) -> str:
    """The character a node is likely to start with, to tell whether emphasis may close before it: an
    emphasis may not be written, so its content's first character counts."""
    if node.kind == "text":
        return node.text[:1]
    if node.kind == "code_inline":
        return "{" if _wiki_code_fits(node.text) else node.text[:1]
    if node.kind in ("link", "image") and _wiki_url_fits(node.href):
        return "["
    if node.kind in _BREAKS:
        return "\n"
    return _wiki_leading_character(node.children[0]) if node.children else ""


def _wiki_boundary(character: str) -> bool:
    """Wiki emphasis opens and closes only next to a non-word character (jira2markdown's rule)."""
    return not character or not (character.isalnum() or character == "_")


def _wiki_code_fits(code: str) -> bool:
    """Whether {{code}} reads back: it ends at the first `}}`."""
    return "{{" not in code and "}}" not in code and code[0] != "{" and code[-1] != "}"


def _wiki_url_fits(url: str) -> bool:
    return bool(re.match(r"(?:https?|ftp)://", url, re.IGNORECASE) or _WIKI_EMAIL.fullmatch(url))


def _escape_wiki(text: str, preceding: str, following: str, at_line_start: bool) -> str:
    """Wiki text; a URL followed by whitespace stays as it is, for Jira to link (jira2markdown keeps a
    URL verbatim up to the next whitespace, so another gets its `://` escaped and is no URL)."""
    escaped = []
    position = 0
    for url in _BARE_URL.finditer(text):
        next_character = text[url.end() : url.end() + 1] or following
        words = text[position : url.start()]
        escaped.append(_escape_wiki_words(words, preceding, url.group()[0], at_line_start and not position))
        before_url = words[-1:] or (preceding if not position else "")
        if _is_whitespace(next_character) and before_url not in ("[", "|"):
            escaped.append(url.group())
        else:
            words = _escape_wiki_words(url.group(), before_url, next_character, False)
            escaped.append(words.replace("://", "\\://"))
        preceding, position = url.group()[-1], url.end()
    escaped.append(_escape_wiki_words(text[position:], preceding, following, at_line_start and not position))
    return "".join(escaped)


def _escape_wiki_words(text: str, preceding: str, following: str, at_line_start: bool) -> str:
    escaped = []
    for index, character in enumerate(text):
        before = text[index - 1] if index else preceding
        after = text[index + 1] if index + 1 < len(text) else following
        if character == "\\":
            escaped.append("&#92;")  # `\\` is a line break in wiki markup
        elif character == "&" and _ENTITY.match(text, index):
            escaped.append("&amp;")
        elif (
            character in "*{}[]|^~"
            or (character in "_-+" and not (before.isalnum() and after.isalnum()))
            or (character == "?" and "?" in (before, after))
            or (character == "!" and after and not after.isspace())
            or (character == "#" and index == 0 and at_line_start)
        ):
            escaped.append("\\" + character)
        else:
            escaped.append(character)
    result = "".join(escaped)
    if at_line_start and (heading := re.match(r"(?:h[1-6]|bq)\.", result)):
        result = heading.group()[:-1] + "\\." + result[heading.end() :]
    return result


_WRITERS: dict[str, Callable[[list[_Node]], Any]] = {
    "markdown": _write_markdown,
    "html": _write_html,
    "adf": _write_adf,
    "jira_wiki": _write_jira_wiki,
}
