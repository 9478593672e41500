"""Readers that turn resolved inputs into datatrove Documents.

Use :class:`InputReader` with items from :func:`pipelines.ingest.inputs.resolve_inputs`.
Rejected records keep flowing as Documents with ``metadata["reject_reason"]``
(see :data:`REJECT_REASONS`) so they can be routed to the exclusion dataset.
"""

from pipelines.ingest.readers.documents import REJECT_REASONS
from pipelines.ingest.readers.reader import KIND_READERS, InputReader

__all__ = ["InputReader", "KIND_READERS", "REJECT_REASONS"]
