"""Small helpers several test packages share."""
from __future__ import annotations

from pathlib import Path

from deploy.bundle import Bundle


def record(root: Path, *rels: str) -> None:
    """Record hand-written bundle files in the manifest, as the stages that write them do
    (readers refuse files the manifest does not vouch for)."""
    bundle = Bundle(root)
    for rel in rels:
        bundle.record_file(rel)
    bundle.save()
