"""datatrove writers that put documents and rejections into the lake atomically.

datatrove's `ParquetWriter` writes straight to the final file name, so a killed task leaves a
truncated shard that looks real. Ours write each task's files under `_staging/`, and move them
into the dataset folder only once closed. A task killed midway leaves nothing in the dataset; its
rerun rewrites the same names with the same content, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import posixpath

from datatrove.data import Document
from datatrove.io import get_datafolder
from datatrove.pipeline.writers import ParquetWriter

from pipelines.lake import DOCUMENTS_SCHEMA, REJECTED_SCHEMA, STAGING, Lake, publish

MAX_SHARD_BYTES = 1 << 30  # DESIGN §3: shards <= 1 GB


def _clip_int32(n: int) -> int:
    return min(n, 2**31 - 1)


class StagedParquetWriter(ParquetWriter):
    """A `ParquetWriter` whose files appear in `lake/<dataset>/` only when complete.

    Each writer stages under its own `part` folder: a task holds several writers of one dataset
    (one per exclusion step), which close at different times, and each must publish only its own
    files, never a neighbour's that is still open.
    """

    def __init__(self, lake: Lake, dataset: str, run: str, filename: str, schema, part: str) -> None:  # noqa: ANN001
        self.final_dir = lake.path(dataset)
        staging = lake.path(STAGING, run, dataset, part)
        super().__init__(
            staging,
            output_filename="${rank}/" + filename,
            compression="zstd",
            batch_size=1000,
            max_file_size=MAX_SHARD_BYTES,
            schema=schema,
            use_content_defined_chunking=False,
        )
        self._ranks: set[int] = set()

    def write(self, document: Document, rank: int = 0, **kwargs) -> None:  # noqa: ANN003
        self._ranks.add(rank)
        super().write(document, rank, **kwargs)

    def close(self) -> None:
        super().close()
        fs = self.output_folder.fs
        final = get_datafolder(self.final_dir)
        for rank in sorted(self._ranks):
            prefix = f"{rank:05d}"
            for name in self.output_folder.list_files(subdirectory=prefix, recursive=True):
                relative = posixpath.relpath(name, prefix)
                publish(fs, self.output_folder.resolve_paths(name), final.resolve_paths(relative))
        self._ranks.clear()


class DocumentsWriter(StagedParquetWriter):
    """Writes kept documents as `lang=<code>/<run>_<rank>.parquet` rows of DOCUMENTS_SCHEMA."""

    name = "📒 Lake documents"

    def __init__(self, lake: Lake, dataset: str, run: str) -> None:
        super().__init__(lake, dataset, run, f"lang=${{lang}}/{run}_${{rank}}.parquet", DOCUMENTS_SCHEMA, "documents")

    def _default_adapter(self, document: Document) -> dict:
        meta = document.metadata
        text = document.text
        return {
            "id": document.id,
            "text": text,
            "url": meta.get("url"),
            "source": meta.get("source"),
            "lang": meta.get("lang"),
            "lang_score": meta.get("lang_score"),
            "n_chars": _clip_int32(len(text)),
            "n_words": _clip_int32(len(text.split())),
            "date": meta.get("date"),
            "content_type": meta.get("content_type"),
            "minhash_cluster_size": meta.get("minhash_cluster_size"),
        }


class RejectedWriter(StagedParquetWriter):
    """Writes what one step set aside, with its reason, as `<stage>/<step>/<run>_<rank>.parquet`."""

    name = "🗑 Lake rejections"

    def __init__(self, lake: Lake, dataset: str, run: str, stage: str, step: str) -> None:
        super().__init__(lake, dataset, run, f"{stage}/{step}/{run}_${{rank}}.parquet", REJECTED_SCHEMA, f"{stage}-{step}")
        self.stage, self.step, self.run_id = stage, step, run

    def _default_adapter(self, document: Document) -> dict:
        meta = document.metadata
        text = document.text or ""
        return {
            "id": document.id,
            "stage": self.stage,
            "step": self.step,
            "reason": meta.get("reject_reason") or meta.get("filter_reason") or self.step,
            "detail": meta.get("reject_detail"),
            "source": meta.get("source"),
            "url": meta.get("url"),
            "lang": meta.get("lang"),
            "text": text,
            "n_chars": _clip_int32(len(text)),
            "unusable_file": bool(meta.get("unusable_file", False)),
            "duplicate_of": meta.get("duplicate_of"),
            "run": self.run_id,
        }
