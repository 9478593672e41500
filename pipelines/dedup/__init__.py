"""Dedup: `documents/clean` into `documents/dedup` (exact, URL and MinHash near duplicates)."""
