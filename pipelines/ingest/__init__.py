"""Ingest: raw web text (WARC/WET/ARC, HTML, JSONL, parquet, HF datasets) into `documents/clean`."""
