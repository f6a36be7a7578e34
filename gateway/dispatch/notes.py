"""Note texts kept apart from the case: the text of a history note (and of an extension request) lives in
``keyspace.case_notes_key(case, day)`` with the scan log's retention; the history entry keeps only a reference.

A note is personal data (a name, a phone number told to the handler): it is masked (``policy.masking``) before
it is stored and expires with the log of its day (``scan.scanlog.partition_expiry``: the end of the note's day +
``retention_days``), while the case's structure (who did what when) keeps the case's three years. One key per
day and case: with several notes, each expires exactly when its own day's log does; no later note extends an
earlier one. The TTL is set relative to the writer's clock (``CaseStore.clock``, the dispatch runtime's clock),
like every other case TTL, so a gateway whose clock is controlled (tests) expires notes by that clock; a note
already past its expiry when written is not stored at all (its entry still says it had one).

A stream entry with a note carries ``note=""`` and ``note_ref="<YYYYMMDD>:<entry index>"``: the day names the key
and the index (the entry's position in the history, fixed because the write script appends only at the length
it read) names the field. A ref whose text is gone reads back as ``note=None, note_expired=True``. Entries
written before this layout carry the text inline: they are read as they are and masked on the way out (they
keep the case's retention until the case expires; see docs/dispatch.md, "Notes").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.scan.scanlog import day_of, partition_expiry
from policy.casework import HistoryEntry, entry_from_fields, entry_to_fields
from policy.masking import mask_personal

__all__ = ["EXTENSION_FIELD", "NoteWrite", "join_entries", "note_days", "note_ttl_ms", "refs_of", "split_entries"]

EXTENSION_FIELD = "ext"  # the field of the extension request's note in its day's notes hash


@dataclass(frozen=True, slots=True)
class NoteWrite:
    """One note text to store: its day (names the key), its field, the masked text and the key's TTL (ms)."""

    day: str
    field: str
    text: str
    ttl_ms: int


def note_ttl_ms(day: str, retention_days: int, now: datetime) -> int:
    """Milliseconds from ``now`` until the log of ``day`` expires (<= 0: already past)."""
    return partition_expiry(day, retention_days) * 1000 - int(now.timestamp() * 1000)


def note_days(entries: Sequence[HistoryEntry]) -> list[str]:
    """The days whose notes keys a write of ``entries`` touches, sorted (the script's extra KEYS)."""
    return sorted({day_of(e.at) for e in entries if e.note})


def split_entries(
    entries: Sequence[HistoryEntry], first_index: int, retention_days: int, now: datetime
) -> tuple[list[dict[str, str]], list[NoteWrite]]:
    """The stream fields of new history entries (notes replaced by refs) and the note texts to store apart."""
    out: list[dict[str, str]] = []
    notes: list[NoteWrite] = []
    for index, entry in enumerate(entries, start=first_index):
        fields = entry_to_fields(entry)
        if entry.note:
            day = day_of(entry.at)
            ttl_ms = note_ttl_ms(day, retention_days, now)
            if ttl_ms > 0:
                notes.append(NoteWrite(day, str(index), mask_personal(entry.note).text, ttl_ms))
            fields["note"] = ""
            fields["note_ref"] = f"{day}:{index}"
        out.append(fields)
    return out, notes


def refs_of(raw: Sequence[Mapping[str, str]]) -> list[str]:
    """The days named by the note refs of stored stream entries (which notes keys a read must fetch)."""
    return sorted({f["note_ref"].split(":", 1)[0] for f in raw if f.get("note_ref")})


def join_entries(raw: Sequence[Mapping[str, str]], texts: Mapping[str, Mapping[str, str]] | None) -> list[HistoryEntry]:
    """History entries from stored stream fields and the fetched notes (day -> field -> text).

    ``texts=None``: the notes were not fetched (listings, evaluation): entries with a ref carry no note and are
    not flagged expired.
    """
    out: list[HistoryEntry] = []
    for fields in raw:
        entry = entry_from_fields(fields)
        ref = fields.get("note_ref", "")
        if ref:
            day, _, index = ref.partition(":")
            text = texts.get(day, {}).get(index) if texts is not None else None
            entry = replace(entry, note=text or None, note_expired=texts is not None and not text)
        elif entry.note:
            entry = replace(entry, note=mask_personal(entry.note).text)  # written inline before the split
        out.append(entry)
    return out
