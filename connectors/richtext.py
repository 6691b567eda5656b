"""Rich text between tools: one canonical form, CommonMark Markdown, converted at the edges. Pure, no ORM.

Targetprocess and Zendesk keep HTML, Jira Cloud's REST v3 answers with the Atlassian Document Format
(ADF, JSON), Jira's REST v2 (Data Center reads, and all our writes) speaks Jira wiki markup, GitHub and
GitLab keep Markdown. The integration engine keeps one form and converts at the edges:

    to_markdown(value, source_format)   a tool's rich text -> canonical Markdown (str)
    from_markdown(text, target_format)  canonical Markdown -> the tool's form (str; an ADF dict for "adf")

Every conversion reads its input into one small document tree, tidies the tree, and writes it out.

Rules:
- The formats are FORMATS; any other name raises ValueError naming them. Nothing else raises: broken
  HTML, odd wiki markup, ADF with unknown node types, missing keys or a value that is not a dict all
  convert. None and "" convert to "" (from_markdown: to "" or an empty ADF document). A dict or list
  handed to to_markdown is read as ADF, whatever the format named (a Jira Cloud answer where wiki
  markup was expected still converts); another non-string is read as its str().
- Every form keeps: paragraphs, headings 1-6, bullet and ordered lists (nested), links with their URL,
  emphasis, strong, strikethrough (GitHub's `~~`), inline code, code blocks with their language, hard
  line breaks, block quotes and horizontal rules.
- Text is never lost: a construct a form cannot hold becomes its plain text (the degradations below).
  Markup that is not text goes: tags, attributes, link titles, the content of <script>, <style>,
  <head>, <template> and <noscript>, HTML comments.
- Canonical Markdown is normalised: ATX headings; `-` bullets and `1.` numbers (`*` and `1)` for a list
  that directly follows a list of its kind, so the two stay apart); a list is tight unless an item
  needs blank lines (two paragraphs, or a paragraph after a nested list); fenced code blocks with the
  language as info (a language other than letters, digits and `#+.-` is dropped); `***` rules;
  inline links (references resolved); `*`, `**`, `~~` delimiters with whitespace moved outside them;
  `\\` hard breaks; soft breaks kept as newlines; literal punctuation backslash-escaped where Markdown
  would read it as markup; no trailing whitespace on any line (code included), no leading or trailing
  blank lines in code, no blank lines at the end and no trailing newline. URLs are percent-encoded
  the CommonMark way; a javascript:, vbscript:, file: or data: (other than images) URL is no link.
- Markdown input: raw HTML is read the way GitHub shows it: an HTML block is converted by the HTML
  rules below, an inline <br> is a hard break, other inline tags go and their text stays. Tables and
  other extensions beyond CommonMark and strikethrough stay as their literal text. Images are kept.
- HTML: written by markdown-it (a soft break becomes <br />, since GitHub, GitLab and Jira show a
  newline inside a paragraph as a line break); read by markdownify. Underline, sub/superscript and
  colour become plain text, a table becomes its rows as text, a link with an unsafe URL its text.
- ADF: a soft break is written as a hardBreak (read back as a hard break). Images become links to the
  picture (alt text, or the URL, as the link text). ADF holds code with no mark but a link, so code
  inside emphasis loses the emphasis. A list item or a quote holds no heading (its text becomes a
  paragraph), no quote (its blocks are lifted out) and no rule (dropped). Read: panels become quotes;
  mentions, emoji, status lozenges and dates become their text, cards become links; tables, expands,
  layouts, task and decision lists, and any unknown node give their content (a known inline node with
  an attrs.text gives that text); marks other than strong, em, strike, code and link go.
- Jira wiki: written with wiki escapes (backslashes; `&#92;` for a backslash, `&amp;` before an entity)
  and bare URLs left as they are; read by jira2markdown after its input is made safe (see
  _prepare_wiki). Both breaks become a newline (`\\\\` inside emphasis), so a hard break reads back as
  a soft one. An ordered list loses its first number; a list nested in a list of the other kind
  becomes the outer kind from the third level on; blocks other than paragraphs and lists inside a list
  item become lines of the item's text; quotes inside quotes are lifted out. Emphasis, strong and
  strikethrough touching a letter or digit outside them (inside a word, or glued to another mark)
  cannot be written and become plain text. A code block whose language is not letters, digits, `#`
  or `+` is written as {noformat} (no language); one without a language too, since jira2markdown
  reads a bare {code} as Java (as Jira shows it). Images become links; a link whose URL is not
  http(s), ftp or a plain mailto becomes its text. Underline, sub/superscript, citations and colour
  read as plain text, tables as their rows.
- Idempotent: converting twice gives what converting once gave, for every format f:
  to_markdown(from_markdown(m, f), f) is a fixed point of m -> to_markdown(from_markdown(m, f), f),
  and to_markdown(m, "markdown") == m for every canonical m. The engine compares values to detect
  edits, so a conversion that drifted on each round trip would look like an edit and echo forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from jira2markdown import convert as jira_wiki_to_markdown
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdownify import ATX, BACKSLASH, MarkdownConverter, chomp

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
_BARE_URL = re.compile(r"(?:https?|ftp)://[^\s|\[\]]+", re.IGNORECASE)


def to_markdown(value: Any, source_format: str) -> str:
    """A tool's rich text (a str, or a dict for ADF) as canonical Markdown."""
    reader = _READERS[_known(source_format)]
    if value is None or value == "":
        return ""
    if isinstance(value, dict | list):
        reader = _read_adf
    elif not isinstance(value, str) and reader is not _read_adf:
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
        elif token.type in _BREAKS or (token.type == "html_inline" and _HTML_BREAK.fullmatch(token.content)):
            parent.children.append(_Node("hardbreak" if token.type == "html_inline" else token.type))
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
            code_language_callback=_html_code_language,
        )

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
    return _read_markdown(_HtmlToMarkdown().convert(html))


# Jira wiki markup in: made safe for jira2markdown, then the Markdown reader.

# Where wiki text is taken literally: {code}, {noformat} and {{monospace}} as jira2markdown finds them.
_WIKI_VERBATIM = re.compile(
    r"(\{code(?::[^}]*)?\}.*?\{code\}|\{noformat(?::[^}]*)?\}.*?\{noformat\}|\{\{[^\n]*?\}\})", re.DOTALL
)
_WIKI_ESCAPE = re.compile(r"\\\\|\\([!-/:-@\[-`{-~])")
_WIKI_LINE_STARTS = (
    (re.compile(r"^(\d{1,9})([.)])(?=\s|$)"), 2),  # "1. text" is text in wiki, a list in Markdown
    (re.compile(r"^([+~=])"), 1),  # bullets, fences and setext underlines in Markdown
    (re.compile(r"^(_)(?=[_\s]*$)"), 1),  # a rule in Markdown
    (re.compile(r"^(-)$"), 1),  # a setext underline in Markdown
)


def _entity(character: str) -> str:
    return f"&#{ord(character)};"


def _prepare_wiki(text: str) -> str:
    """Wiki markup that jira2markdown turns into the Markdown Jira would show.

    jira2markdown passes text through, so what is text in Jira but markup in Markdown is replaced by an
    entity (which Markdown reads as the character): `<`, `>` and backticks, Markdown-only line starts
    (`1.`, `+`, `=`, ...), and Markdown characters inside bare URLs. Wiki backslash escapes become
    entities too: jira2markdown reads `\\*x\\*` as bold. Lines lose their indentation and trailing
    whitespace, which Jira ignores but Markdown would read as code blocks and hard breaks.
    """
    parts = _WIKI_VERBATIM.split(text.replace("\r\n", "\n").replace("\r", "\n"))
    prepared = []
    for index, part in enumerate(parts):
        if index % 2:
            prepared.append(part)
            continue
        lines = part.split("\n")
        for number, line in enumerate(lines):
            at_line_start = number > 0 or index == 0
            if at_line_start:
                line = line.lstrip()
            if number < len(lines) - 1 or index == len(parts) - 1:
                line = line.rstrip()
            line = _prepare_wiki_line(line)
            if at_line_start:
                for pattern, group in _WIKI_LINE_STARTS:
                    line = pattern.sub(lambda match, group=group: _entity_group(match, group), line)
            lines[number] = line
        prepared.append("\n".join(lines))
    return "".join(prepared)


def _entity_group(match: re.Match, group: int) -> str:
    return "".join(
        _entity(text) if number == group else text for number, text in enumerate(match.groups(), 1)
    )


def _prepare_wiki_line(line: str) -> str:
    pieces = []
    position = 0
    for url in _BARE_URL.finditer(line):
        pieces.append(_prepare_wiki_words(line[position : url.start()]))
        pieces.append("".join(_entity(c) if c in "\\`*_[]<>~&" else c for c in url.group()))
        position = url.end()
    pieces.append(_prepare_wiki_words(line[position:]))
    return "".join(pieces)


def _prepare_wiki_words(text: str) -> str:
    text = _WIKI_ESCAPE.sub(lambda match: _entity(match.group(1)) if match.group(1) else match.group(), text)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("`", _entity("`"))


def _read_jira_wiki(text: str) -> list[_Node]:
    return _read_markdown(jira_wiki_to_markdown(_prepare_wiki(text)))


# ADF in: walk the JSON; whatever is missing or unknown gives its text.

_ADF_MARKS = ("link", "strong", "em", "s")  # also the order marks are written in
_ADF_MARK_KINDS = {"strong": "strong", "em": "em", "strike": "s"}
_ADF_INLINE_TYPES = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status", "placeholder"}


def _read_adf(value: Any) -> list[_Node]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [
                _Node("paragraph", _text_with_breaks(paragraph)) for paragraph in re.split(r"\n\s*\n", value)
            ]
    return _adf_blocks(value)


def _adf_list(value: Any) -> list[dict]:
    """The nodes of a content list: a lone node is a list of one, and anything else is dropped."""
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
    if kind != "text":
        text = attrs.get("text")
        if isinstance(text, str):  # a mention, a status, an unknown node with text
            return [(_Node("text", text=text), ())]
        return [run for child in _adf_list(node.get("content")) for run in _adf_runs(child)]
    text = node.get("text")
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
            return -length, _ADF_MARKS.index(mark[0])

        for mark in sorted((mark for mark in marks if mark not in held), key=lasts):
            node = _Node(mark[0], href=mark[1] if mark[0] == "link" else "")
            (open_marks[-1][1].children if open_marks else root).append(node)
            open_marks.append((mark, node))
        (open_marks[-1][1].children if open_marks else root).append(leaf)
    return root


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
        else:  # a list item or an inline node out of place (malformed ADF): its text as paragraphs
            tidy.extend(_tidy_blocks(block.children) or _tidy_blocks([_Node("paragraph", [block])]))
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


def _tidy_inline(nodes: list[_Node]) -> list[_Node]:
    tidy: list[_Node] = []
    for node in nodes:
        if node.kind == "text":
            # Runs of spaces and tabs show as one space everywhere (HTML collapses them).
            tidy.append(_Node("text", text=re.sub(r"[ \t]+", " ", node.text.replace("\x00", "\ufffd"))))
        elif node.kind == "code_inline":
            if node.text:
                tidy.append(_Node("code_inline", text=re.sub(r"\r\n|\r|\n", " ", node.text)))
        elif node.kind in _DELIMITED:
            lead, core, trail = _split_outer_whitespace(_tidy_inline(node.children))
            tidy.extend([*lead, _Node(node.kind, core), *trail] if core else [*lead, *trail])
        elif node.kind in ("link", "image"):
            children = _tidy_inline(node.children)
            href = _PARSER.normalizeLink(node.href)
            if not node.href or not _PARSER.validateLink(node.href):
                tidy.extend(children)
            else:
                if node.kind == "link" and not _has_text(children):
                    children = [_Node("text", text=href)]
                tidy.append(_Node(node.kind, children, href=href))
        elif node.kind in _BREAKS:
            tidy.append(_Node(node.kind))
        else:  # a block inside a paragraph (malformed ADF): its inline content
            tidy.extend(_tidy_inline(node.children))
    return _merge_neighbours(_strip_around_breaks(_merge_neighbours(tidy)))


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
        if previous and previous.kind == node.kind and previous.href == node.href:
            if node.kind in ("text", "code_inline"):
                merged[-1] = _Node(node.kind, text=previous.text + node.text)
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
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", block.text)), default=0))
        return f"{fence}{block.language}\n{block.text}\n{fence}"
    return "***"  # hr: `---` after a list marker would read as a rule of dashes, `- ***` does not


def _markdown_list(block: _Node, alternate: bool) -> str:
    tight = _is_tight(block)
    items = []
    for offset, item in enumerate(block.children):
        if block.kind == "ordered_list":
            marker = f"{block.number + offset}{')' if alternate else '.'}"
        else:
            marker = "*" if alternate else "-"
        lines = _markdown_blocks(item.children, "\n" if tight else "\n\n").split("\n")
        indent = " " * (len(marker) + 1)
        first = f"{marker} {lines[0]}" if lines[0] else marker
        items.append("\n".join([first, *(indent + line if line else "" for line in lines[1:])]))
    return ("\n" if tight else "\n\n").join(items)


def _is_tight(block: _Node) -> bool:
    """Tight unless an item holds a block after its first that cannot follow without a blank line:
    only a list that may interrupt a paragraph can (a bullet list, or one starting at 1, whose first
    item is not empty)."""
    return all(
        child.kind in _LISTS
        and (child.kind == "bullet_list" or child.number == 1)
        and child.children[0].children
        for item in block.children
        for child in item.children[1:]
    )


def _markdown_inline(nodes: list[_Node], at_line_start: bool) -> str:
    written: list[str] = []
    for index, node in enumerate(nodes):
        following = nodes[index + 1] if index + 1 < len(nodes) else None
        if node.kind == "text":
            line_start = at_line_start and (not written or written[-1].endswith("\n"))
            text = _escape_markdown(node.text, line_start)
            if text.endswith("!") and following and following.kind == "link":  # or it reads as an image
                text = text[:-1] + "\\!"
            written.append(text)
        elif node.kind == "code_inline":
            written.append(_markdown_code_span(node.text))
        elif node.kind in _DELIMITED:
            delimiter = _DELIMITED[node.kind]
            written.append(delimiter + _markdown_inline(node.children, at_line_start=False) + delimiter)
        elif node.kind in ("link", "image"):
            text = _markdown_inline(node.children, at_line_start=False)
            prefix = "!" if node.kind == "image" else ""
            written.append(f"{prefix}[{text}]({_markdown_destination(node.href)})")
        elif node.kind == "softbreak":
            written.append("\n")
        elif node.kind == "hardbreak":
            written.append("\\\n")
    return "".join(written)


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
    """ADF blocks for a document, a list item or a quote: the last two hold no headings, quotes or rules."""
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
            written.append(_adf_text(node.text, (*(mark for mark in marks if mark[0] == "link"), ("code",))))
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
_ADF_MARK_ORDER = ("link", "strong", "em", "s", "code")


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
        return "\n".join(_escape_wiki(line, "", "", True) for line in block.text.split("\n") if line.strip())
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
    if node.kind in _BREAKS:
        return "\\\\" if marks else "\n"  # a newline would end the emphasis
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
    return "}}" not in code and "{{" not in code and not code.startswith("{") and not code.endswith("}")


def _wiki_url_fits(url: str) -> bool:
    return bool(re.match(r"(?:https?|ftp)://", url, re.IGNORECASE) or _WIKI_EMAIL.fullmatch(url))


def _escape_wiki(text: str, preceding: str, following: str, at_line_start: bool) -> str:
    escaped = []
    position = 0
    for url in _BARE_URL.finditer(text):  # Jira links bare URLs: they stay as they are
        escaped.append(
            _escape_wiki_words(text[position : url.start()], preceding, url.group()[0], at_line_start)
        )
        escaped.append(url.group())
        position = url.end()
        preceding, at_line_start = url.group()[-1], False
    escaped.append(_escape_wiki_words(text[position:], preceding, following, at_line_start))
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
