"""Rich text between tools: connectors.richtext, rule by rule (see the module docstring)."""

import csv
import json
import re
import string

import pytest
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from connectors.richtext import FORMATS, from_markdown, to_markdown

MARKDOWN_RENDERER = MarkdownIt("commonmark").enable("strikethrough")


BLOCK_TAGS = [
    "p",
    "div",
    "li",
    "br",
    "td",
    "th",
    "blockquote",
    "pre",
    "hr",
    *(f"h{level}" for level in range(1, 7)),
]


def visible_words(html: str) -> list[str]:
    """The words a reader sees in HTML, in order (a picture's alt text included)."""
    soup = BeautifulSoup(html, "html.parser")
    for hidden in soup(["script", "style"]):
        hidden.decompose()
    for image in soup("img"):
        image.replace_with(f" {image.get('alt') or ''} ")
    for block in soup(BLOCK_TAGS):
        block.insert_after(" ")  # inline elements join their neighbours' words, blocks do not
    return re.findall(r"\w+", soup.get_text())


def words(markdown: str) -> list[str]:
    return visible_words(MARKDOWN_RENDERER.render(markdown))


def round_trip(markdown: str, target_format: str) -> str:
    return to_markdown(from_markdown(markdown, target_format), target_format)


def text(content: str, *marks: dict) -> dict:
    node = {"type": "text", "text": content}
    return {**node, "marks": list(marks)} if marks else node


def paragraph(*content: dict) -> dict:
    return {"type": "paragraph", "content": list(content)}


def doc(*content: dict) -> dict:
    return {"type": "doc", "version": 1, "content": list(content)}


def item(*content: dict) -> dict:
    return {"type": "listItem", "content": list(content)}


STRONG, EM, CODE, STRIKE = {"type": "strong"}, {"type": "em"}, {"type": "code"}, {"type": "strike"}


def link(href: str) -> dict:
    return {"type": "link", "attrs": {"href": href}}


# The API.


@pytest.mark.parametrize("convert", [to_markdown, from_markdown])
def test_an_unknown_format_raises_naming_the_known_ones(convert):
    with pytest.raises(ValueError, match="markdown, html, adf, jira_wiki"):
        convert("text", "textile")


@pytest.mark.parametrize("source_format", FORMATS)
def test_nothing_converts_to_an_empty_string(source_format):
    assert to_markdown(None, source_format) == ""
    assert to_markdown("", source_format) == ""


def test_empty_markdown_converts_to_an_empty_form():
    assert from_markdown("", "markdown") == from_markdown("", "html") == from_markdown("", "jira_wiki") == ""
    assert from_markdown("", "adf") == doc()


def test_a_dict_is_read_as_adf_whatever_the_format_named():
    assert to_markdown(doc(paragraph(text("from v3"))), "jira_wiki") == "from v3"


def test_another_non_string_is_read_as_its_text():
    assert to_markdown(42, "markdown") == to_markdown(42, "html") == "42"


# A realistic Targetprocess description, through every form.

TARGETPROCESS_DESCRIPTION = (
    "<div><p>Customers want <strong>invoice</strong> payment.</p><ul><li>EU</li><li>UK</li></ul>"
    '<p>See <a href="https://example.com/spec">the spec</a>.</p></div>'
)
TARGETPROCESS_MARKDOWN = (
    "Customers want **invoice** payment.\n\n- EU\n- UK\n\nSee [the spec](https://example.com/spec)."
)


def test_a_targetprocess_description_becomes_markdown():
    assert to_markdown(TARGETPROCESS_DESCRIPTION, "html") == TARGETPROCESS_MARKDOWN


def test_the_targetprocess_description_in_adf():
    assert from_markdown(TARGETPROCESS_MARKDOWN, "adf") == doc(
        paragraph(text("Customers want "), text("invoice", STRONG), text(" payment.")),
        {"type": "bulletList", "content": [item(paragraph(text("EU"))), item(paragraph(text("UK")))]},
        paragraph(text("See "), text("the spec", link("https://example.com/spec")), text(".")),
    )


def test_the_targetprocess_description_in_jira_wiki_markup():
    assert from_markdown(TARGETPROCESS_MARKDOWN, "jira_wiki") == (
        "Customers want *invoice* payment.\n\n* EU\n* UK\n\nSee [the spec|https://example.com/spec]."
    )


def test_the_targetprocess_description_comes_back_from_every_form():
    for target_format in FORMATS:
        assert round_trip(TARGETPROCESS_MARKDOWN, target_format) == TARGETPROCESS_MARKDOWN, target_format


# Every construct, written to each form.

EVERY_CONSTRUCT = """# Invoice payment

Customers want **invoice** payment, *soon*; see `PAY-12`, ~~cheques~~ and [the spec](https://example.com/spec).
Second line\\
after a break.

1. EU
   - France
   - Spain
2. UK

> Quoted

```sql
select 1;
```

___"""


def test_canonical_markdown_keeps_every_construct_as_it_is():
    assert to_markdown(EVERY_CONSTRUCT, "markdown") == EVERY_CONSTRUCT
    assert from_markdown(EVERY_CONSTRUCT, "markdown") == EVERY_CONSTRUCT


def test_every_construct_in_html():
    assert from_markdown(EVERY_CONSTRUCT, "html") == (
        "<h1>Invoice payment</h1>\n"
        "<p>Customers want <strong>invoice</strong> payment, <em>soon</em>; see <code>PAY-12</code>, "
        '<s>cheques</s> and <a href="https://example.com/spec">the spec</a>.<br />\n'
        "Second line<br />\nafter a break.</p>\n"
        "<ol>\n<li>EU\n<ul>\n<li>France</li>\n<li>Spain</li>\n</ul>\n</li>\n<li>UK</li>\n</ol>\n"
        "<blockquote>\n<p>Quoted</p>\n</blockquote>\n"
        '<pre><code class="language-sql">select 1;\n</code></pre>\n'
        "<hr />"
    )


def test_every_construct_in_adf():
    assert from_markdown(EVERY_CONSTRUCT, "adf") == doc(
        {"type": "heading", "attrs": {"level": 1}, "content": [text("Invoice payment")]},
        paragraph(
            text("Customers want "),
            text("invoice", STRONG),
            text(" payment, "),
            text("soon", EM),
            text("; see "),
            text("PAY-12", CODE),
            text(", "),
            text("cheques", STRIKE),
            text(" and "),
            text("the spec", link("https://example.com/spec")),
            text("."),
            {"type": "hardBreak"},
            text("Second line"),
            {"type": "hardBreak"},
            text("after a break."),
        ),
        {
            "type": "orderedList",
            "content": [
                item(
                    paragraph(text("EU")),
                    {
                        "type": "bulletList",
                        "content": [item(paragraph(text("France"))), item(paragraph(text("Spain")))],
                    },
                ),
                item(paragraph(text("UK"))),
            ],
        },
        {"type": "blockquote", "content": [paragraph(text("Quoted"))]},
        {"type": "codeBlock", "content": [text("select 1;")], "attrs": {"language": "sql"}},
        {"type": "rule"},
    )


def test_every_construct_in_jira_wiki_markup():
    assert from_markdown(EVERY_CONSTRUCT, "jira_wiki") == (
        "h1. Invoice payment\n\n"
        "Customers want *invoice* payment, _soon_; see {{PAY-12}}, -cheques- and [the spec|https://example.com/spec].\n"
        "Second line\nafter a break.\n\n"
        "# EU\n#* France\n#* Spain\n# UK\n\n"
        "{quote}\nQuoted\n{quote}\n\n"
        "{code:sql}\nselect 1;\n{code}\n\n"
        "----"
    )


@pytest.mark.parametrize("target_format", ["html", "adf"])
def test_every_construct_comes_back_from_html_and_adf_with_soft_breaks_made_hard(target_format):
    assert round_trip(EVERY_CONSTRUCT, target_format) == EVERY_CONSTRUCT.replace("spec).\n", "spec).\\\n")


def test_every_construct_comes_back_from_jira_wiki_with_breaks_made_soft():
    assert round_trip(EVERY_CONSTRUCT, "jira_wiki") == EVERY_CONSTRUCT.replace(
        "Second line\\\n", "Second line\n"
    )


def test_ordered_lists_keep_their_first_number_except_in_jira_wiki():
    markdown = "3. three\n4. four"
    assert from_markdown(markdown, "adf")["content"][0]["attrs"] == {"order": 3}
    assert round_trip(markdown, "html") == round_trip(markdown, "adf") == markdown
    assert round_trip(markdown, "jira_wiki") == "1. three\n2. four"


# Canonical Markdown.


def test_markdown_is_normalised():
    assert to_markdown(
        "Title\n=====\n\n* loose\n\n* list\n\n---\n\n    indented code\n\n[ref]: https://example.com/r\n\n"
        "See [the ref][ref] and __strong__ _em_.  \nNext  line   \n\n\n",
        "markdown",
    ) == (
        "# Title\n\n- loose\n- list\n\n___\n\n```\nindented code\n```\n\n"
        "See [the ref](https://example.com/r) and **strong** *em*.\\\nNext line"
    )


def test_literal_markdown_characters_are_escaped():
    adf = doc(
        paragraph(text("2 * 3 = 6, [x], <b>, snake_case, _x_, `y`, &amp;")),
        paragraph(text("# not a heading")),
    )
    assert to_markdown(adf, "adf") == (
        "2 \\* 3 = 6, \\[x\\], \\<b>, snake_case, \\_x\\_, \\`y\\`, \\&amp;\n\n\\# not a heading"
    )


def test_a_list_after_a_list_of_its_kind_takes_the_other_marker():
    adf = doc(
        {"type": "bulletList", "content": [item(paragraph(text("a")))]},
        {"type": "bulletList", "content": [item(paragraph(text("b")))]},
        {"type": "orderedList", "content": [item(paragraph(text("c")))]},
        {"type": "orderedList", "content": [item(paragraph(text("d")))]},
    )
    assert to_markdown(adf, "adf") == "- a\n\n* b\n\n1. c\n\n1) d"


def test_a_list_stays_loose_where_an_item_needs_blank_lines():
    markdown = "- first\n\n  second paragraph\n\n- next"
    assert to_markdown(markdown, "markdown") == markdown


def test_emphasis_commonmark_cannot_open_where_it_is_becomes_plain_text():
    adf = doc(paragraph(text("a"), text("(b)", EM), text("c")))
    assert to_markdown(adf, "adf") == "a(b)c"


def test_whitespace_moves_outside_emphasis():
    adf = doc(paragraph(text("a"), text(" b ", STRONG), text("c")))
    assert to_markdown(adf, "adf") == "a **b** c"


def test_raw_html_in_markdown_reads_as_github_shows_it():
    markdown = (
        "<details>\n<summary>Logs</summary>\n\nBody **text**\n\n</details>\n\nPress <kbd>Ctrl</kbd>+C<br>now"
    )
    assert to_markdown(markdown, "markdown") == "Logs\n\nBody **text**\n\nPress Ctrl+C\\\nnow"


def test_extensions_beyond_commonmark_stay_literal_text():
    markdown = "| a | b |\n| --- | --- |\n\n- [ ] task"
    assert to_markdown(markdown, "markdown") == "| a | b |\n| --- | --- |\n\n- \\[ \\] task"


def test_markdown_keeps_images():
    assert (
        to_markdown("![diagram](https://example.com/d.png)", "markdown")
        == "![diagram](https://example.com/d.png)"
    )


def test_a_link_to_an_unsafe_url_is_no_link():
    assert to_markdown('<a href="javascript:alert(1)">click</a>', "html") == "click"
    assert from_markdown("[click](javascript:alert(1))", "html") == "<p>[click](javascript:alert(1))</p>"


def test_urls_are_percent_encoded():
    assert (
        to_markdown('<a href="https://example.com/a b">space</a>', "html")
        == "[space](https://example.com/a%20b)"
    )


# HTML.


def test_html_constructs_become_markdown():
    html = (
        '<h3 class="title" style="color:red">Title</h3><ol start="3"><li>three<ol><li>a</li></ol></li>'
        '<li>four</li></ol><pre><code class="language-python">x = 1\n</code></pre>'
        "<blockquote><p>q</p></blockquote>"
        '<p>a<br>b <del>gone</del> <u>under</u> <span style="x">span</span></p><hr>'
        '<p><img src="https://example.com/i.png" alt="diagram"></p>'
    )
    assert to_markdown(html, "html") == (
        "### Title\n\n3. three\n   1. a\n4. four\n\n```python\nx = 1\n```\n\n> q\n\n"
        "a\\\nb ~~gone~~ under span\n\n___\n\n![diagram](https://example.com/i.png)"
    )


def test_scripts_styles_and_comments_do_not_leak_into_the_text():
    html = (
        "<head><title>T</title><style>p{color:red}</style></head><script>alert('x')</script>"
        "<p onclick='steal()'>Body</p><noscript>no js</noscript><template>tpl</template><!-- note -->"
    )
    assert to_markdown(html, "html") == "Body"


def test_a_table_becomes_its_rows_as_text():
    html = "<table><tr><th>Region</th><th>Due</th></tr><tr><td>EU</td><td>May</td></tr></table>"
    assert to_markdown(html, "html") == "| Region | Due |\n| --- | --- |\n| EU | May |"


def test_code_with_backticks_keeps_its_fence_apart():
    html = "<pre><code>```\nnot the end\n```</code></pre>"
    assert to_markdown(html, "html") == "````\n```\nnot the end\n```\n````"


@pytest.mark.parametrize(
    ("html", "markdown"),
    [
        ("<p>unclosed <b>bold <i>both", "unclosed **bold *both***"),
        ("</div></p><li>stray item", "- stray item"),
        ("<![=rejected by the parser", "\\<!\\[=rejected by the parser"),
        ("<<<>>>", "\\<\\<\\<>>>"),
        ("<a href=>empty href</a>", "empty href"),
        ("&#xZZ; not an entity", "&#xZZ; not an entity"),
    ],
)
def test_broken_html_never_raises_and_keeps_its_text(html, markdown):
    assert to_markdown(html, "html") == markdown


# ADF.


def test_adf_constructs_become_markdown():
    adf = doc(
        {"type": "heading", "attrs": {"level": 2}, "content": [text("Plan")]},
        paragraph(
            text("bold ", STRONG),
            text("both", STRONG, EM),
            text(" italic", EM),
            text(" and "),
            text("code", CODE),
            text(" and "),
            text("gone", STRIKE),
            text(" and "),
            text("a link", link("https://example.com")),
            {"type": "hardBreak"},
            text("next line"),
        ),
        {
            "type": "bulletList",
            "content": [
                item(paragraph(text("a")), {"type": "orderedList", "content": [item(paragraph(text("b")))]})
            ],
        },
        {"type": "blockquote", "content": [paragraph(text("quoted"))]},
        {"type": "codeBlock", "attrs": {"language": "python"}, "content": [text("x = 1\n")]},
        {"type": "rule"},
    )
    assert to_markdown(adf, "adf") == (
        "## Plan\n\n**bold *both*** *italic* and `code` and ~~gone~~ and [a link](https://example.com)\\\n"
        "next line\n\n"
        "- a\n  1. b\n\n> quoted\n\n```python\nx = 1\n```\n\n___"
    )


def test_adf_nodes_without_a_markdown_form_give_their_text():
    adf = doc(
        {"type": "panel", "attrs": {"panelType": "info"}, "content": [paragraph(text("Heads up"))]},
        paragraph(
            {"type": "mention", "attrs": {"id": "5b10", "text": "@Ada Lovelace"}},
            text(" moved it to "),
            {"type": "status", "attrs": {"text": "IN REVIEW", "color": "blue"}},
            text(" on "),
            {"type": "date", "attrs": {"timestamp": "1767225600000"}},
            text(" "),
            {"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}},
            text(" see "),
            {"type": "inlineCard", "attrs": {"url": "https://example.com/card"}},
        ),
        {
            "type": "table",
            "content": [
                {"type": "tableRow", "content": [{"type": "tableCell", "content": [paragraph(text("cell"))]}]}
            ],
        },
        {"type": "expand", "attrs": {"title": "Details"}, "content": [paragraph(text("hidden"))]},
        {
            "type": "taskList",
            "content": [{"type": "taskItem", "attrs": {"state": "DONE"}, "content": [text("task")]}],
        },
        {"type": "aNodeFromTheFuture", "content": [paragraph(text("future text"))]},
        {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"type": "file", "id": "abc"}}]},
        paragraph(
            text("under", {"type": "underline"}),
            text(" colour", {"type": "textColor", "attrs": {"color": "#f00"}}),
        ),
    )
    assert to_markdown(adf, "adf") == (
        "> Heads up\n\n@Ada Lovelace moved it to IN REVIEW on 2026-01-01 😄 see "
        "[https://example.com/card](https://example.com/card)\n\ncell\n\nDetails\n\nhidden\n\n- task\n\n"
        "future text\n\nunder colour"
    )


def test_adf_marks_of_neighbouring_texts_nest():
    adf = doc(
        paragraph(
            text("a ", link("https://x.test"), STRONG), text("b", link("https://x.test")), text(" c", STRONG)
        )
    )
    assert to_markdown(adf, "adf") == "[**a** b](https://x.test) **c**"


def test_adf_holds_code_with_no_mark_but_a_link():
    markdown = "**bold `code`** [`linked`](https://x.test)"
    assert from_markdown(markdown, "adf") == doc(
        paragraph(
            text("bold ", STRONG), text("code", CODE), text(" "), text("linked", link("https://x.test"), CODE)
        )
    )


def test_adf_list_items_and_quotes_hold_no_headings_quotes_or_rules():
    markdown = "- # heading in an item\n\n  > quote in an item\n\n  ___\n\n> > quote in a quote"
    assert from_markdown(markdown, "adf") == doc(
        {
            "type": "bulletList",
            "content": [item(paragraph(text("heading in an item")), paragraph(text("quote in an item")))],
        },
        {"type": "blockquote", "content": [paragraph(text("quote in a quote"))]},
    )


def test_adf_items_start_with_a_paragraph():
    adf = from_markdown("- - nested first", "adf")
    assert adf["content"][0]["content"][0]["content"][0] == {"type": "paragraph", "content": []}


def test_images_become_links_in_adf():
    assert from_markdown("![diagram](https://x.test/d.png)", "adf") == doc(
        paragraph(text("diagram", link("https://x.test/d.png")))
    )


@pytest.mark.parametrize(
    ("adf", "markdown"),
    [
        ("not json\n\nplain text", "not json\n\nplain text"),
        (
            json.dumps(doc(paragraph(text("json")))),
            "json",
        ),
        (42, "42"),
        ([], ""),
        ([paragraph(text("a list of blocks"))], "a list of blocks"),
        ({"type": "doc"}, ""),
        ({"content": None}, ""),
        ({"type": "doc", "content": "text where a list belongs"}, "text where a list belongs"),
        (doc({"type": "paragraph", "content": [{"type": "text"}, {"text": 5}, None, "bare", 3]}), "5bare3"),
        (doc({"type": "heading", "attrs": {"level": "x"}, "content": [text("bad level")]}), "# bad level"),
        (doc({"type": "heading", "attrs": {"level": 9}, "content": [text("too deep")]}), "###### too deep"),
        (
            doc({"type": "orderedList", "attrs": {"order": 10**30}, "content": [paragraph(text("huge"))]}),
            "999999999. huge",
        ),
        (
            doc(
                paragraph(
                    text("bad marks", "strong", {"type": "link"}, {"type": "link", "attrs": {"href": 5}})
                )
            ),
            "bad marks",
        ),
        (
            doc(paragraph(paragraph(text("nested"), {"type": "hardBreak"}), text("paragraphs"))),
            "nested\\\nparagraphs",
        ),
        (doc(text("text where a block belongs")), "text where a block belongs"),
        (
            doc({"type": "codeBlock", "attrs": {"language": ["x"]}, "content": [text("a\r\nb  ")]}),
            "```\na\nb\n```",
        ),
        (doc(paragraph({"type": "date", "attrs": {"timestamp": "tomorrow"}})), "tomorrow"),
        (doc(paragraph(text("javascript", link("javascript:alert(1)")))), "javascript"),
    ],
)
def test_malformed_adf_never_raises_and_keeps_its_text(adf, markdown):
    assert to_markdown(adf, "adf") == markdown


# Jira wiki markup.


def test_jira_wiki_markup_becomes_markdown():
    wiki = (
        "h2. Plan\n\nShip *invoice* payment _soon_, see {{PAY-12}}, -cheques- and [the spec|https://example.com/spec].\n"
        "line\\\\break\n\n* EU\n** France\n* UK\n\n# one\n# two\n\n{code:java}\nint x = 1;\n{code}\n\n"
        "{noformat}\nraw *text*\n{noformat}\n\nbq. quoted\n\n{quote}\nlong quote\n{quote}\n\n----"
    )
    assert to_markdown(wiki, "jira_wiki") == (
        "## Plan\n\nShip **invoice** payment *soon*, see `PAY-12`, ~~cheques~~ and [the spec](https://example.com/spec).\n"
        "line\nbreak\n\n- EU\n  - France\n- UK\n\n1. one\n2. two\n\n```java\nint x = 1;\n```\n\n"
        "```\nraw *text*\n```\n\n> quoted\n\n> long quote\n\n___"
    )


def test_what_jira_shows_as_text_stays_text():
    wiki = "Escaped \\*stars\\*, <b>tags</b>, `ticks`, 1. not a list\n1. still not a list\n+ not a bullet"
    assert to_markdown(wiki, "jira_wiki") == (
        "Escaped \\*stars\\*, \\<b>tags\\</b>, \\`ticks\\`, 1. not a list\n"
        "1\\. still not a list\n\\+ not a bullet"
    )


def test_bare_urls_stay_as_they_are_in_jira_wiki():
    markdown = "See https://example.com/a_b_c and https://example.com/\\*x\\*/y."
    wiki = from_markdown(markdown, "jira_wiki")
    assert wiki == "See https://example.com/a_b_c and https://example.com/*x*/y."
    assert to_markdown(wiki, "jira_wiki") == markdown


def test_a_url_glued_to_markup_is_no_bare_url_in_jira_wiki():
    # jira2markdown takes a URL up to the next whitespace, markup and all
    assert from_markdown("https://example.com/x`code`", "jira_wiki") == "https\\://example.com/x{{code}}"


def test_jira_wiki_effects_without_a_markdown_form_become_plain_text():
    wiki = "+under+ ^super^ ~sub~ ??cite?? {color:red}red{color} [~accountid:5b10]"
    assert to_markdown(wiki, "jira_wiki") == "under super sub cite red @5b10"


def test_code_without_a_language_reads_as_java_as_jira_shows_it():
    assert to_markdown("{code}\nint x;\n{code}", "jira_wiki") == "```Java\nint x;\n```"


def test_code_without_a_language_is_written_as_noformat():
    assert from_markdown("```\nplain\n```", "jira_wiki") == "{noformat}\nplain\n{noformat}"


def test_a_language_jira2markdown_cannot_read_is_dropped():
    assert from_markdown("```objective-c\nx\n```", "jira_wiki") == "{noformat}\nx\n{noformat}"


def test_emphasis_touching_a_word_is_plain_text_in_jira_wiki():
    assert from_markdown("in**side**word and *fine*", "jira_wiki") == "insideword and _fine_"


def test_emphasis_around_strong_is_written_strong_around_emphasis():
    assert from_markdown("***both***", "jira_wiki") == "*_both_*"
    assert round_trip("***both***", "jira_wiki") == "***both***"


def test_literal_wiki_characters_are_escaped():
    markdown = "a \\* b {c} \\[d\\] x|y ^z~ ?? !bang e-mail - dash h1. C:\\\\dir \\&amp;"
    assert from_markdown(markdown, "jira_wiki") == (
        "a \\* b \\{c\\} \\[d\\] x\\|y \\^z\\~ \\?\\? \\!bang e-mail \\- dash h1. C:&#92;dir &amp;amp;"
    )
    assert round_trip(markdown, "jira_wiki") == to_markdown(markdown, "markdown")


def test_blocks_in_a_wiki_list_item_become_lines_of_its_text():
    markdown = "- first\n\n  second\n\n  ```\n  code\n  ```\n- next"
    assert from_markdown(markdown, "jira_wiki") == "* first\nsecond\ncode\n* next"


def test_quotes_inside_quotes_are_lifted_out_in_jira_wiki():
    assert from_markdown("> outer\n>\n> > inner", "jira_wiki") == "{quote}\nouter\n\ninner\n{quote}"


def test_images_become_links_in_jira_wiki():
    assert from_markdown("![diagram](https://x.test/d.png)", "jira_wiki") == "[diagram|https://x.test/d.png]"


def test_a_link_jira_wiki_cannot_hold_becomes_its_text():
    markdown = "[relative](/browse/PAY-1) [mail](mailto:ada@example.com) [odd mail](mailto:a%20b@x.test)"
    assert from_markdown(markdown, "jira_wiki") == "relative [mail|mailto:ada@example.com] odd mail"


def test_a_jira_wiki_table_becomes_its_rows_as_text():
    assert to_markdown("||Region||Due||\n|EU|May|", "jira_wiki") == "|Region|Due|\n|---|---|\n|EU|May|"


def test_a_third_level_list_of_the_other_kind_takes_the_outer_kind_in_jira_wiki():
    markdown = "1. a\n   1. b\n      - c"
    assert from_markdown(markdown, "jira_wiki") == "# a\n## b\n### c"


@pytest.mark.parametrize(
    "wiki", ["|", "||", "{code}", "{quote}", "[", "[|]", "*", "{{", "\\", "h1.", "bq.", "* ", "#"]
)
def test_odd_jira_wiki_markup_never_raises(wiki):
    markdown = to_markdown(wiki, "jira_wiki")
    assert to_markdown(markdown, "markdown") == markdown


# Properties: any document built from the kept constructs converts to a fixed point and keeps its words.

URLS = st.sampled_from(["https://example.com/spec", "https://example.com/a_b?x=1&y=2", "http://x.test/(p)"])
PUNCTUATED_WORDS = ["C++", "e-mail", "snake_case", "50%", "don't", "#42", "3.5", "R&D", "x_y_z", "[x]", "a*b"]
WORD = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8) | st.sampled_from(
    [*PUNCTUATED_WORDS, "naïve", "数据"]
)
PLAIN = st.lists(WORD, min_size=1, max_size=4).map(" ".join)
SEGMENT = st.one_of(
    PLAIN,
    PLAIN.map("*{}*".format),
    PLAIN.map("**{}**".format),
    PLAIN.map("~~{}~~".format),
    PLAIN.map("`{}`".format),
    st.tuples(PLAIN, URLS).map(lambda pair: f"[{pair[0]}]({pair[1]})"),
)
LINE = st.lists(SEGMENT, min_size=1, max_size=4).map(" ".join)


@st.composite
def paragraphs(draw):
    lines = draw(st.lists(LINE, min_size=1, max_size=3))
    breaks = draw(st.lists(st.sampled_from(["\n", "\\\n"]), min_size=len(lines), max_size=len(lines)))
    return "".join(line + line_break for line, line_break in zip(lines, breaks, strict=True))[
        : -len(breaks[-1])
    ]


@st.composite
def lists(draw, depth=0):
    ordered = draw(st.booleans())
    start = draw(st.integers(1, 3))
    items = []
    for offset in range(draw(st.integers(1, 3))):
        marker = f"{start + offset}." if ordered else "-"
        entry = f"{marker} {draw(LINE)}"
        if depth < 2 and draw(st.booleans()):
            indent = " " * (len(marker) + 1)
            entry += "\n" + "\n".join(indent + line for line in draw(lists(depth + 1)).split("\n"))
        items.append(entry)
    return "\n".join(items)


BLOCK = st.one_of(
    paragraphs(),
    st.tuples(st.integers(1, 6), LINE).map(lambda pair: "#" * pair[0] + " " + pair[1]),
    lists(),
    st.tuples(st.sampled_from(["", "python"]), st.lists(PLAIN, min_size=1, max_size=3)).map(
        lambda pair: f"```{pair[0]}\n" + "\n".join(pair[1]) + "\n```"
    ),
    paragraphs().map(lambda text: "\n".join("> " + line for line in text.split("\n"))),
    st.just("---"),
)
DOCUMENTS = st.lists(BLOCK, min_size=1, max_size=4).map("\n\n".join)
PROPERTY_SETTINGS = settings(max_examples=40, derandomize=True, database=None, deadline=None)


@pytest.mark.parametrize("target_format", FORMATS)
@PROPERTY_SETTINGS
@given(markdown=DOCUMENTS)
def test_a_round_trip_through_any_form_settles_at_once_and_keeps_the_words(target_format, markdown):
    once = round_trip(markdown, target_format)
    assert round_trip(once, target_format) == once
    assert to_markdown(once, "markdown") == once
    assert words(once) == words(markdown)


MARKUP_TEXT = st.lists(
    st.sampled_from(
        [*"ab 1\n\t*_`[]()<>!#&;-+=~|\\{}^?.:", "http://x.test/a_b", "**", "> ", "- ", "1. ", "```", "<br>"]
    ),
    max_size=30,
).map("".join)


@pytest.mark.parametrize("source_format", ["markdown", "html", "jira_wiki"])
@PROPERTY_SETTINGS
@given(value=MARKUP_TEXT)
def test_any_text_in_any_form_converts_to_canonical_markdown(source_format, value):
    markdown = to_markdown(value, source_format)
    assert to_markdown(markdown, "markdown") == markdown
    for target_format in FORMATS:
        once = round_trip(markdown, target_format)
        assert round_trip(once, target_format) == once


ADF_BLOCK_TYPES = ["paragraph", "heading", "bulletList", "orderedList", "listItem", "blockquote", "codeBlock"]
ADF_OTHER_TYPES = ["panel", "table", "tableRow", "tableCell", "expand", "taskList", "taskItem", "unknown"]
ADF_NODES = st.recursive(
    st.builds(text, PLAIN | st.just(""))
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["hardBreak", "rule", "mention", "emoji", "date", "bogus"])}
    ),
    lambda children: st.fixed_dictionaries(
        {
            "type": st.sampled_from(ADF_BLOCK_TYPES + ADF_OTHER_TYPES),
            "content": st.lists(children, max_size=3) | st.none() | PLAIN,
            "attrs": st.fixed_dictionaries({"level": st.integers(-1, 9), "order": st.integers(-1, 5)})
            | st.none(),
            "marks": st.lists(st.sampled_from([STRONG, EM, CODE, STRIKE, link("https://x.test"), "bad"])),
        }
    ),
    max_leaves=12,
)


@PROPERTY_SETTINGS
@given(adf=ADF_NODES.map(lambda node: doc(node)))
def test_any_adf_converts_to_canonical_markdown(adf):
    markdown = to_markdown(adf, "adf")
    assert to_markdown(markdown, "markdown") == markdown
    for target_format in FORMATS:
        once = round_trip(markdown, target_format)
        assert round_trip(once, target_format) == once


# Real payloads: every rich text description recorded from the tools converts and keeps its words.


def recorded_rows(path):
    csv.field_size_limit(10**8)  # a row holds a whole item
    with path.open(newline="", encoding="utf-8") as handle:
        return [json.loads(row["data"]) for row in csv.DictReader(handle)]


def values_of(data, key):
    if isinstance(data, dict):
        yield from ([data[key]] if isinstance(data.get(key), str) and data[key] else [])
        for value in data.values():
            yield from values_of(value, key)
    elif isinstance(data, list):
        for value in data:
            yield from values_of(value, key)


def recorded_descriptions(fixtures_dir) -> list[tuple[str, str]]:
    """(format, description) of every recorded item with rich text, without repeats."""
    payloads = fixtures_dir / "real-payloads"
    found = []
    for path, key in [
        *((path, "Description") for path in payloads.glob("targetprocess/*/*.json")),
        *((path, "html_body") for path in payloads.glob("zendesk/*/*.json")),
    ]:
        found += [
            ("html", value) for value in values_of(json.loads(path.read_text(encoding="utf-8-sig")), key)
        ]
    for name in ("_raw_jira_api_issues.csv", "_raw_jira_api_issue_relationships.csv"):
        issues = recorded_rows(fixtures_dir / "devlake-raw" / "jira" / name)
        found += [
            ("jira_wiki", issue["fields"]["description"])
            for issue in issues
            if issue["fields"].get("description")
        ]
    for path, key in [
        (fixtures_dir / "devlake-raw/github/_raw_github_api_issues.csv", "body"),
        (fixtures_dir / "devlake-raw/github/_raw_github_api_pull_requests.csv", "body"),
        (payloads / "gitlab/_raw_gitlab_api_issues.csv", "description"),
        (payloads / "gitlab/_raw_gitlab_api_merge_requests.csv", "description"),
    ]:
        found += [("markdown", row[key]) for row in recorded_rows(path) if row.get(key)]
    return list(dict.fromkeys(found))


def source_words(source_format: str, value: str) -> list[str]:
    if source_format == "html":
        return visible_words(value)
    if source_format == "markdown":
        return words(value)
    return re.findall(r"\w+", value)  # the recorded wiki descriptions are plain text


@pytest.mark.needs_fixtures
def test_every_recorded_description_converts_keeping_its_words_and_settles_in_every_form(fixtures_dir):
    descriptions = recorded_descriptions(fixtures_dir)
    assert {source_format for source_format, _ in descriptions} == {"html", "jira_wiki", "markdown"}
    for source_format, value in descriptions:
        markdown = to_markdown(value, source_format)
        assert words(markdown) == source_words(source_format, value), value
        for target_format in FORMATS:
            once = round_trip(markdown, target_format)
            assert round_trip(once, target_format) == once, (target_format, value)
            assert words(once) == words(markdown), (target_format, value)
