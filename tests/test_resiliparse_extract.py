"""The fast extraction path: resiliparse main-content text, alone and inside our extraction sandbox."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipelines.ingest.extract import SandboxedExtraction
from pipelines.ingest.resiliparse_extract import Resiliparse
from pipelines.lake import REJECTED, Lake
from pipelines.lake.writers import RejectedWriter

ARTICLE = [
    "The harbour master walks along the quay every morning and writes down which boats went out before dawn.",
    "When the wind turns to the north he raises a red flag, and the smaller boats stay tied to the wall until it drops.",
    "His office keeps tide tables from forty years back, and fishermen still come in to compare this year with those.",
]
JAPANESE = "港の管理人は毎朝岸壁を歩き、夜明け前に出港した船の名前を帳面に書き留めます。北風が吹くと赤い旗を掲げます。"
CHINESE = "港务长每天早上沿着码头散步，记下天亮前出海的船只。刮北风的时候，他会升起一面红旗，小船就留在岸边。"
THAI = "นายท่าเรือเดินไปตามท่าเทียบเรือทุกเช้าและจดชื่อเรือที่ออกไปก่อนรุ่งสาง เมื่อลมเปลี่ยนเป็นทิศเหนือเขาจะชักธงสีแดงขึ้น"


def site_page(paragraphs: list[str], lang: str = "en") -> str:
    """A page with the usual chrome around an article: menu, sidebar of links, footer."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    menu = "".join(f'<li><a href="/{w}">{w.title()} section</a></li>' for w in ("news", "boats", "weather", "shop"))
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>Harbour</title>'
        "<style>p { color: navy }</style><script>var tracker = 'SCRIPT-MUST-NOT-APPEAR';</script></head><body>"
        f'<header><nav class="menu"><ul>{menu}</ul></nav></header>'
        f'<div id="content"><article><h1>Harbour diary</h1>\n{body}\n</article></div>'
        '<aside class="sidebar"><h3>Related links</h3><ul><li><a href="/a">Older diary entries</a></li>'
        '<li><a href="/b">Tide table archive</a></li></ul></aside>'
        '<footer class="footer">Copyright Harbour Office · <a href="/privacy">Privacy policy</a></footer>'
        "</body></html>"
    )


def html_doc(doc_id: str, html: str) -> Document:
    return Document(text=html, id=doc_id, metadata={"content_type": "text/html", "url": f"https://example.org/{doc_id}"})


def test_main_text_is_extracted_and_site_chrome_dropped():
    text = Resiliparse().extract(site_page(ARTICLE))
    for paragraph in ARTICLE:
        assert paragraph in text.splitlines()  # one paragraph per line, whole
    assert "Harbour diary" in text
    chrome = ("Weather section", "Related links", "Tide table archive", "Privacy policy", "Copyright", "SCRIPT-MUST-NOT")
    assert not [words for words in chrome if words in text]


def test_output_is_tidied_like_the_trafilatura_path_blank_lines_gone_code_indentation_kept():
    html = "<html><body><main><p>First line.   </p><br><br><p>Second line.</p><pre>def f():\n    return 1\n\n</pre></main></body>"
    assert Resiliparse().extract(html) == "First line.\nSecond line.\ndef f():\n    return 1"


@pytest.mark.parametrize("lang, sentence", [("ja", JAPANESE), ("zh", CHINESE), ("th", THAI)])
def test_non_latin_scripts_survive_intact(lang, sentence):
    text = Resiliparse().extract(site_page([sentence, *ARTICLE[:1]], lang))
    assert sentence in text


def test_bytes_are_decoded_with_the_declared_charset():
    html = f'<html><head><meta charset="shift_jis"></head><body><article><p>{JAPANESE}</p></article></body></html>'
    assert JAPANESE in Resiliparse().extract(html.encode("shift_jis"))


@pytest.mark.parametrize(
    "html",
    ["", "   \n", "<html></html>", "<html><head><title>t</title></head><body><script>x = 1</script><div></div></body></html>"],
)
def test_pages_without_text_give_empty_text(html):
    assert Resiliparse().extract(html) == ""


def test_navigation_only_page_gives_empty_text():
    menu = "".join(f'<li><a href="/{i}">Menu entry {i}</a></li>' for i in range(20))
    assert Resiliparse().extract(f'<html><body><nav class="menu"><ul>{menu}</ul></nav></body></html>') == ""


def rejected_rows(lake: Lake) -> dict[str, dict]:
    rows = [row for shard in lake.shards(REJECTED) for row in pq.read_table(shard).to_pylist()]
    return {row["url"].rsplit("/", 1)[-1]: row for row in rows}


def test_sandbox_keeps_text_and_sets_aside_empty_and_timed_out_pages_then_recovers(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    # resiliparse is quadratic in nesting depth: thousands of nested blocks take seconds, far past 0.2 s
    deep = "<html><body>" + "<div><p>x</p>" * 8000 + "</div>" * 8000 + "</body></html>"
    docs = [
        html_doc("good", site_page(ARTICLE)),
        html_doc("empty", "<html><body><nav><a href='/'>Home</a></nav></body></html>"),
        html_doc("deep", deep),
        html_doc("after", site_page([JAPANESE])),  # the sandbox restarted after the timeout
        Document(text="already plain text", id="plain", metadata={"content_type": "text/plain"}),
    ]
    step = SandboxedExtraction(Resiliparse(timeout=0.2), RejectedWriter(lake, REJECTED, "run1", "ingest", "extract"))
    kept = {doc.id: doc.text for doc in step.run(iter(docs))}

    assert set(kept) == {"good", "after", "plain"}
    assert ARTICLE[0] in kept["good"] and "Privacy policy" not in kept["good"]
    assert JAPANESE in kept["after"]
    assert kept["plain"] == "already plain text"
    rejected = rejected_rows(lake)
    assert {name: row["reason"] for name, row in rejected.items()} == {
        "empty": "no_text_extracted",
        "deep": "extraction_timeout",
    }
    assert rejected["deep"]["step"] == "extract" and "0.2s" in rejected["deep"]["detail"]
