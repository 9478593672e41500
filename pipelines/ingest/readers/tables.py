"""Parquet files and ``datasets`` save_to_disk folders -> Documents.

Both are Arrow tables underneath, so they share the schema check (a string
``text`` column must exist, else the whole input is ``no_text_column``), the
column selection (scalar columns plus ``text``/``id``/``metadata``; big nested
or binary columns such as images are never materialised) and batch-wise
reading: never the whole table in memory. Parquet is read one row group at a
time so a corrupt row group costs only its own rows.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from datatrove.data import Document

from pipelines.ingest.inputs import InputItem
from pipelines.ingest.readers.documents import StatFn, file_damage_doc, unusable_file_doc
from pipelines.ingest.readers.files import open_binary
from pipelines.ingest.readers.records import RecordChecker

BATCH_ROWS = 1024
_ALWAYS_READ = ("text", "id", "metadata")


def text_column_problem(schema: Any) -> str | None:
    """Why this Arrow schema has no usable text column, or None if it has one."""
    import pyarrow as pa

    if schema.get_field_index("text") < 0:
        names = ", ".join(schema.names) or "none"
        return f"no 'text' column (columns: {names})"
    kind = schema.field("text").type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        return f"'text' column has type {kind}, not string"
    return None


def readable_columns(schema: Any) -> list[str]:
    """Columns worth reading: text/id/metadata and anything that fits flat metadata."""
    import pyarrow as pa

    def flat(kind: Any) -> bool:
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        return bool(
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_temporal(kind)
            or pa.types.is_null(kind)
        )

    return [field.name for field in schema if field.name in _ALWAYS_READ or flat(field.type)]


def read_parquet(item: InputItem, stat: StatFn) -> Iterator[Document]:
    """Yield one Document per row of a parquet file, row group by row group."""
    import pyarrow.parquet as pq

    with open_binary(item.path) as raw:
        if not raw.read(1):
            yield unusable_file_doc(item.path, "empty_file", "file has zero bytes")
            return
        raw.seek(0)
        try:
            parquet = pq.ParquetFile(raw, pre_buffer=False)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for bad footers
            yield unusable_file_doc(item.path, "corrupt_parquet", f"cannot read the parquet footer: {error}")
            return
        with parquet:
            schema = parquet.schema_arrow
            if problem := text_column_problem(schema):
                yield unusable_file_doc(item.path, "no_text_column", problem)
                return
            columns = readable_columns(schema)
            checker = RecordChecker(item.path)
            index = 0
            for group in range(parquet.num_row_groups):
                group_start = index
                group_rows = parquet.metadata.row_group(group).num_rows
                try:
                    # no pyarrow threads near a Python file object: they can abort the process at exit (lake's read_shard)
                    batches = parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns, use_threads=False)
                    for batch in batches:
                        for row in batch.to_pylist():
                            yield checker.to_document(row, index, f"row {index}")
                            index += 1
                except Exception as error:  # corrupt pages / decompression errors
                    skipped = group_start + group_rows - index
                    detail = f"row group {group} unreadable at row {index} ({error}); {skipped} rows skipped"
                    if index == 0 and parquet.num_row_groups == 1:
                        yield unusable_file_doc(item.path, "corrupt_parquet", detail, offset=f"row{index}")
                    else:
                        yield file_damage_doc(item.path, "corrupt_parquet", detail, offset=f"row{index}")
                    index = group_start + group_rows
            stat("parquet_rows", value=index)


def read_hf_dataset(item: InputItem, stat: StatFn) -> Iterator[Document]:
    """Yield one Document per row of a ``datasets`` save_to_disk folder (all splits)."""
    try:
        from datasets import DatasetDict, load_from_disk

        dataset = load_from_disk(item.path)
    except Exception as error:  # missing/corrupt state.json, arrow files, ...
        detail = f"datasets.load_from_disk failed: {type(error).__name__}: {error}"
        yield unusable_file_doc(item.path, "unreadable_file", detail)
        return
    splits: list[tuple[str | None, Any]] = (
        list(dataset.items()) if isinstance(dataset, (DatasetDict, Mapping)) else [(None, dataset)]
    )
    checker = RecordChecker(item.path)
    index = 0
    for split, part in splits:
        extra = {"split": split} if split is not None else None
        schema = part.data.schema
        if problem := text_column_problem(schema):
            where = f"split {split!r}: " if split is not None else ""
            yield unusable_file_doc(item.path, "no_text_column", where + problem, offset=split)
            continue
        part = part.select_columns(readable_columns(schema)).with_format("arrow")
        split_start = index
        try:
            for table in part.iter(batch_size=BATCH_ROWS):
                for row in table.to_pylist():
                    yield checker.to_document(row, index, _where(index - split_start, split), extra)
                    index += 1
        except Exception as error:
            detail = f"reading stopped at {_where(index - split_start, split)}: {type(error).__name__}: {error}"
            if index == 0:
                yield unusable_file_doc(item.path, "unreadable_file", detail, offset=split)
            else:
                yield file_damage_doc(item.path, "unreadable_file", detail, offset=split)
    stat("hf_rows", value=index)


def _where(row: int, split: str | None) -> str:
    return f"row {row}" if split is None else f"row {row} of split {split}"
