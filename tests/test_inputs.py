"""Specification tests for pipelines.ingest.inputs.resolve_inputs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from pathlib import Path

import pytest
from loguru import logger

from pipelines.ingest.inputs import InputError, InputItem, classify_file, is_arc, resolve_inputs


@pytest.fixture
def warnings() -> list[str]:
    """Collect loguru warnings (loguru does not go through the logging module / caplog)."""
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "name, kind",
    [
        ("a.warc", "warc"), ("a.warc.gz", "warc"), ("a.WET.GZ", "warc"), ("a.wet", "warc"),
        ("IA-001102.arc", "warc"), ("IA-001102.ARC.GZ", "warc"),
        ("a.jsonl", "jsonl"), ("a.jsonl.gz", "jsonl"), ("a.ndjson", "jsonl"), ("c4.json.gz", "jsonl"),
        ("a.parquet", "parquet"), ("a.html", "html"), ("a.HTM", "html"), ("a.xhtml", "html"),
        ("a.json", None), ("a.gz", None), ("a.txt", None), ("a.arrow", None),
    ],
)
def test_files_are_classified_by_name(name: str, kind: str | None) -> None:
    assert classify_file(name) == kind


@pytest.mark.parametrize(
    "path, arc",
    [
        ("crawl.arc", True), ("crawl.arc.gz", True), ("s3://bucket/IA-001102.ARC.GZ", True),
        ("crawl.warc.gz", False), ("crawl.warc", False), ("crawl.warc.wet.gz", False), ("search.parquet", False),
    ],
)
def test_arc_files_are_warc_family_inputs_told_apart_by_name(path: str, arc: bool) -> None:
    assert is_arc(path) is arc


def test_explicit_arc_files_resolve_as_warc_items(tmp_path: Path) -> None:
    old = touch(tmp_path / "IA-001102.arc.gz", b"\x1f\x8b")
    assert [(i.path, i.kind, i.size) for i in resolve_inputs([str(old)])] == [(str(old), "warc", 2)]


def test_explicit_files_become_sorted_deduplicated_absolute_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = touch(tmp_path / "b.jsonl", b"12345")
    a = touch(tmp_path / "a.warc.gz")
    monkeypatch.chdir(tmp_path)
    items = resolve_inputs(["b.jsonl", str(a), "./b.jsonl", str(b)])
    assert [(i.path, i.kind, i.size) for i in items] == [(str(a), "warc", 1), (str(b), "jsonl", 5)]
    assert items[1].mtime_ns == b.stat().st_mtime_ns


def test_directories_are_walked_recursively_and_unknown_files_skipped_with_a_warning(
    tmp_path: Path, warnings: list[str]
) -> None:
    touch(tmp_path / "z.html")
    touch(tmp_path / "sub" / "deeper" / "x.parquet")
    touch(tmp_path / "sub" / "a.wet.gz")
    touch(tmp_path / "README.md")
    touch(tmp_path / "sub" / "notes.txt")
    items = resolve_inputs([str(tmp_path)])
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.kind) for i in items] == [
        ("sub/a.wet.gz", "warc"), ("sub/deeper/x.parquet", "parquet"), ("z.html", "html")
    ]
    assert sum("README.md" in w for w in warnings) == 1 and sum("notes.txt" in w for w in warnings) == 1


def test_zero_byte_and_broken_gzip_files_are_not_errors_when_resolving(tmp_path: Path) -> None:
    empty = touch(tmp_path / "empty.jsonl", b"")
    broken = touch(tmp_path / "broken.warc.gz", b"not gzip")
    assert resolve_inputs([str(empty), str(broken)]) == [
        InputItem(str(broken), "warc", 8, broken.stat().st_mtime_ns),
        InputItem(str(empty), "jsonl", 0, empty.stat().st_mtime_ns),
    ]


def test_missing_path_raises_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.warc.gz: no such file or directory"):
        resolve_inputs([str(tmp_path / "nope.warc.gz")])


def test_explicitly_named_file_of_unknown_type_raises(tmp_path: Path) -> None:
    notes = touch(tmp_path / "notes.txt")
    with pytest.raises(InputError) as error:
        resolve_inputs([str(notes)])
    message = str(error.value)
    assert str(notes) in message and "unsupported file type" in message and "\n" not in message


def test_saved_hf_dataset_folders_are_single_items_even_inside_walked_directories(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(tmp_path / "plain_ds"))
    DatasetDict({"train": Dataset.from_dict({"text": ["c"]})}).save_to_disk(str(tmp_path / "nested" / "dict_ds"))
    touch(tmp_path / "nested" / "x.jsonl")
    items = resolve_inputs([str(tmp_path), str(tmp_path / "plain_ds")])
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.kind) for i in items] == [
        ("nested/dict_ds", "hf_dataset"), ("nested/x.jsonl", "jsonl"), ("plain_ds", "hf_dataset")
    ]
    plain = items[2]
    assert plain.size == sum(f.stat().st_size for f in (tmp_path / "plain_ds").rglob("*") if f.is_file()) > 0


def test_paths_with_spaces_and_non_ascii_names_work(tmp_path: Path) -> None:
    path = touch(tmp_path / "dossier été" / "日本 語.jsonl")
    assert [i.path for i in resolve_inputs([str(path.parent)])] == [str(path)]


def test_file_urls_are_resolved_through_fsspec(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    page = touch(folder / "p.html", b"<html></html>")
    touch(folder / "d.warc")
    items = resolve_inputs([folder.as_uri()])  # percent-encoded, as Path.as_uri() writes it
    assert [(i.path, i.kind, i.size) for i in items] == [
        (f"file://{folder}/d.warc", "warc", 1), (f"file://{folder}/p.html", "html", 13)
    ]
    assert items[1].mtime_ns // 1_000_000_000 == page.stat().st_mtime_ns // 1_000_000_000
    assert resolve_inputs([f"file://{page}"]) == [items[1]]


def test_missing_file_url_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        resolve_inputs([f"file://{tmp_path}/missing.jsonl"])
