"""Specification tests for reading JSONL, parquet, HF dataset folders and HTML files, and the reader as a step.

The contract is the one stated in test_readers_warc.py: bad records come out as reject documents,
good records in the same file survive.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any, Iterator

import pytest
from datatrove.data import Document
from reader_helpers import (
    JAPANESE,
    PNG,
    good,
    page,
    pages,
    read_all,
    rejects,
    rid,
    stat,
    write_warc,
)

from pipelines.ingest.inputs import InputItem, resolve_inputs
from pipelines.ingest.readers import KIND_READERS, InputReader

# --------------------------------------------------------------------------- JSONL


def write_lines(path: Path, lines: list[bytes], gz: bool = False) -> None:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)


def test_jsonl_bad_lines_are_rejected_with_reasons_and_good_lines_survive(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good_record = {"id": "a", "text": "good one", "url": "http://x/a", "date": "2024-01-01", "dump": "CC-1",
                   "score": 0.5, "tags": ["x"], "metadata": {"lang": "en", "dump": "ignored"}}
    write_lines(
        path,
        [
            json.dumps(good_record).encode(),
            b'{"id": "b", "text": broken',
            b"",
            b'{"id": "c", "text": "bad \xff byte"}',
            b'{"id": "d"}',
            b'{"id": "e", "text": null}',
            b'{"id": "f", "text": 42}',
            b'["not", "an", "object"]',
            b'{"id": "a", "text": "dup of a"}',
            b'{"text": "no id here"}',
            b'{"id": "g", "text": "   "}',
        ],
    )
    docs, reader = read_all(path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        ("a", None),
        (f"{path}#1", "invalid_json"),
        ("c", "invalid_utf8"),
        ("d", "missing_text"),
        ("e", "null_text"),
        ("f", "text_not_string"),
        (f"{path}#7", "not_an_object"),
        ("a", "duplicate_id"),
        (f"{path}#9", None),
        ("g", "empty_text"),
    ]
    details = {d.metadata.get("reject_reason"): d.metadata.get("reject_detail") for d in docs}
    assert details["invalid_json"].startswith("line 2: Expecting")
    assert details["invalid_utf8"] == "line 4: invalid UTF-8 at byte 25"
    assert details["duplicate_id"] == "line 9: id 'a' already used on line 1"
    assert docs[0].metadata == {"source": str(path), "url": "http://x/a", "date": "2024-01-01",
                                "content_type": "text/plain", "dump": "CC-1", "score": 0.5, "lang": "en"}
    assert docs[2].text == "bad \ufffd byte" and docs[1].text == '{"id": "b", "text": broken'
    assert docs[8].text == "no id here"
    assert stat(reader, "blank_lines") == 1 and stat(reader, "rejected") == 8


def test_truncated_jsonl_gz_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    rng = random.Random(1)
    lines = [json.dumps({"id": i, "text": rng.randbytes(300).hex()}).encode() for i in range(400)]
    path = tmp_path / "cut.jsonl.gz"
    write_lines(path, lines, gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    docs, _ = read_all(path)
    kept = good(docs)
    assert 0 < len(kept) < 400 and [d.id for d in kept] == [str(i) for i in range(len(kept))]
    assert rejects(docs) == [(f"file:{path}", "truncated_file")]
    assert "unusable_file" not in docs[-1].metadata


def test_jsonl_gz_that_is_not_gzip_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.gz"
    path.write_bytes(b"Access denied\n")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "not_gzip")] and docs[0].metadata["unusable_file"] is True


def test_plain_jsonl_misnamed_gz_is_read_as_plain(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    write_lines(path, [b'{"id": 1, "text": "one"}'])
    docs, _ = read_all(path)
    assert [(d.id, d.text) for d in docs] == [("1", "one")]


def test_zero_byte_jsonl_is_an_unusable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "empty_file")] and docs[0].metadata["unusable_file"] is True


# --------------------------------------------------------------------------- parquet


def test_parquet_rows_become_documents_with_per_row_rejects(tmp_path: Path) -> None:
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": ["r0", "r1", "r2", "r0", None],
            "text": ["zero", None, "two", "dup", "no id"],
            "url": ["http://x/0", None, None, None, None],
            "date": [datetime.datetime(2024, 1, 2, 3, 4, 5)] * 5,
            "dump": ["CC"] * 5,
            "image": [b"\x89PNG"] * 5,
        }
    )
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=2)
    docs, _ = read_all(path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        ("r0", None), ("r1", "null_text"), ("r2", None), ("r0", "duplicate_id"), (f"{path}#4", None)
    ]
    assert docs[0].metadata == {"source": str(path), "url": "http://x/0", "date": "2024-01-02T03:04:05",
                                "content_type": "text/plain", "dump": "CC"}
    assert docs[3].metadata["reject_detail"] == "row 3: id 'r0' already used on row 0"


@pytest.mark.parametrize("columns", [{"content": ["a"]}, {"text": [1]}], ids=["missing", "not_string"])
def test_parquet_without_a_string_text_column_is_unusable(tmp_path: Path, columns: dict[str, list[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "schema.parquet"
    pq.write_table(pa.table(columns), path)
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "no_text_column")] and docs[0].metadata["unusable_file"] is True


def test_parquet_with_a_corrupt_footer_is_unusable(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "footer.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), path)
    data = bytearray(path.read_bytes())
    data[-40:-8] = b"\xff" * 32
    path.write_bytes(bytes(data))
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "corrupt_parquet")] and docs[0].metadata["unusable_file"] is True


def test_zero_byte_parquet_is_an_unusable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "empty_file")]


# --------------------------------------------------------------------------- HF dataset folders


def test_hf_dataset_folder_rows_become_documents(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "ds"
    rows = {"id": [1, 2, 1], "text": ["one", None, "again"], "dump": ["a", "b", "c"]}
    Dataset.from_dict(rows).save_to_disk(str(folder))
    docs, _ = read_all(folder)
    assert [(d.id, d.text, d.metadata.get("reject_reason")) for d in docs] == [
        ("1", "one", None), ("2", "", "null_text"), ("1", "again", "duplicate_id")
    ]
    assert docs[0].metadata["dump"] == "a" and docs[0].metadata["source"] == str(folder)


def test_hf_dataset_dict_reads_every_split_and_records_it(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "dd"
    DatasetDict(
        {"train": Dataset.from_dict({"text": ["t0", "t1"]}), "test": Dataset.from_dict({"text": ["x0"]})}
    ).save_to_disk(str(folder))
    docs, _ = read_all(folder)
    assert [(d.id, d.text, d.metadata["split"]) for d in docs] == [
        (f"{folder}#0", "t0", "train"), (f"{folder}#1", "t1", "train"), (f"{folder}#2", "x0", "test")
    ]


def test_hf_dataset_without_text_column_is_unusable(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "notext"
    Dataset.from_dict({"content": ["a"]}).save_to_disk(str(folder))
    docs, _ = read_all(folder)
    assert rejects(docs) == [(f"file:{folder}", "no_text_column")] and docs[0].metadata["unusable_file"] is True


def test_unreadable_hf_dataset_folder_is_unusable(tmp_path: Path) -> None:
    folder = tmp_path / "broken_ds"
    folder.mkdir()
    (folder / "state.json").write_text("{ not json")
    (folder / "dataset_info.json").write_text("{}")
    docs, _ = read_all(folder)
    assert rejects(docs) == [(f"file:{folder}", "unreadable_file")] and docs[0].metadata["unusable_file"] is True


# --------------------------------------------------------------------------- HTML files, odd paths, URLs


def test_html_file_is_one_document_with_its_path_as_id_and_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(page("Grüße", '<meta charset="utf-8">').encode())
    [doc], _ = read_all(path)
    assert (doc.id, doc.text) == (str(path), page("Grüße", '<meta charset="utf-8">'))
    assert doc.metadata == {"source": str(path), "url": path.as_uri(), "date": None,
                            "content_type": "text/html", "charset": "utf-8"}


def test_html_files_follow_the_same_body_rules_as_warc(tmp_path: Path) -> None:
    (tmp_path / "image.html").write_bytes(PNG)
    (tmp_path / "blank.htm").write_bytes(b" \n\n ")
    (tmp_path / "empty.html").write_bytes(b"")
    (tmp_path / "sjis.xhtml").write_bytes(page(JAPANESE, '<meta charset="shift_jis">').encode("shift_jis"))
    docs, _ = read_all(tmp_path)
    assert [(Path(d.id.removeprefix("file:")).name, d.metadata.get("reject_reason")) for d in docs] == [
        ("blank.htm", "empty_body"), ("empty.html", "empty_file"), ("image.html", "binary_body"), ("sjis.xhtml", None)
    ]
    assert docs[3].metadata["charset"] == "cp932" and JAPANESE in docs[3].text


def test_paths_with_spaces_and_non_ascii_names_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "dir with spaces" / "données 日本"
    folder.mkdir(parents=True)
    html = folder / "ma page été.html"
    html.write_text(page("été"), encoding="utf-8")
    warc = folder / "crawl été.warc.gz"
    write_warc(warc, pages(1, 100), gz=True)
    docs, _ = read_all(tmp_path / "dir with spaces")
    assert [d.id for d in docs] == [rid("p0"), str(html)]
    assert docs[1].metadata["url"] == html.as_uri() and "%20" in docs[1].metadata["url"]


def test_file_urls_are_read_through_fsspec(tmp_path: Path) -> None:
    folder = tmp_path / "url inputs"
    folder.mkdir()
    write_warc(folder / "a.warc.gz", pages(2, 100), gz=True)
    write_lines(folder / "b.jsonl", [b'{"id": "j", "text": "from jsonl"}'])
    (folder / "c.html").write_text(page("html"))
    docs, _ = read_all(folder.as_uri())  # percent-encoded file:// URL
    assert [d.id for d in docs] == [rid("p0"), rid("p1"), "j", f"file://{folder}/c.html"]
    assert all(d.metadata["source"].startswith("file://") for d in docs)


# --------------------------------------------------------------------------- robustness and the executor


def test_unexpected_reader_errors_lose_only_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(item: InputItem, stat: Any) -> Iterator[Document]:
        yield Document(text="first", id="ok", metadata={"source": item.path, "url": None, "date": None,
                                                       "content_type": "text/plain"})
        raise RuntimeError("boom")

    monkeypatch.setitem(KIND_READERS, "jsonl", flaky)
    write_lines(tmp_path / "a.jsonl", [b"{}"])
    (tmp_path / "b.html").write_text(page("still read"))
    docs, _ = read_all(tmp_path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        ("ok", None), (f"file:{tmp_path / 'a.jsonl'}", "unreadable_file"), (str(tmp_path / "b.html"), None)
    ]


def test_file_deleted_after_resolving_becomes_an_unusable_document(tmp_path: Path) -> None:
    path = tmp_path / "gone.jsonl"
    write_lines(path, [b'{"text": "x"}'])
    reader = InputReader(resolve_inputs([str(path)]))
    path.unlink()
    docs = list(reader.run(None, rank=0, world_size=1))
    assert rejects(docs) == [(f"file:{path}", "unreadable_file")] and docs[0].metadata["unusable_file"] is True


def test_default_metadata_is_added_without_overriding_reader_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_lines(path, [b'{"id": "x", "text": "t"}'])
    reader = InputReader(resolve_inputs([str(path)]), default_metadata={"dataset": "demo", "source": "nope"})
    [doc] = list(reader.run(None, rank=0, world_size=1))
    assert doc.metadata["dataset"] == "demo" and doc.metadata["source"] == str(path)


def test_local_executor_shards_items_across_tasks_and_records_stats(tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.writers import JsonlWriter

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_warc(inputs / "a.warc.gz", pages(3, 100), gz=True)
    write_lines(inputs / "b.jsonl", [b'{"id": "j1", "text": "one"}', b"{oops"])
    (inputs / "c.html").write_text(page("html file"))
    (inputs / "d.jsonl").write_bytes(b"")
    items = resolve_inputs([str(inputs)])
    executor = LocalPipelineExecutor(
        pipeline=[InputReader(items), JsonlWriter(str(tmp_path / "out"), compression=None)],
        tasks=2,
        workers=1,
        logging_dir=str(tmp_path / "logs"),
    )
    executor.run()
    per_task = [
        [json.loads(line)["id"] for line in (tmp_path / "out" / f"{rank:05d}.jsonl").read_text().splitlines()]
        for rank in range(2)
    ]
    # items sorted: a.warc.gz, b.jsonl, c.html, d.jsonl -> rank 0 gets a + c, rank 1 gets b + d
    assert per_task[0] == [rid("p0"), rid("p1"), rid("p2"), str(inputs / "c.html")]
    assert per_task[1] == ["j1", f"{inputs / 'b.jsonl'}#1", f"file:{inputs / 'd.jsonl'}"]
    stats = json.loads((tmp_path / "logs" / "stats.json").read_text())
    reader_stats = next(s for s in stats if "Inputs" in s["name"])["stats"]
    totals = {k: v if isinstance(v, (int, float)) else v["total"] for k, v in reader_stats.items()}
    assert totals["input_files"] == 4 and totals["input_files_jsonl"] == 2
    assert totals["documents"] == 5 and totals["documents_warc"] == 3
    assert totals["rejected_invalid_json"] == 1 and totals["rejected_empty_file"] == 1
    assert totals["unusable_files"] == 1
