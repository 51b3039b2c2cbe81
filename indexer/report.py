"""What a run tells: the counts it reports (``--json``, runs.log) and the progress a watching person sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clipsearch.display import counted


@dataclass
class Report:
    added: int = 0
    updated: int = 0
    removed: int = 0
    renamed: int = 0
    unchanged: int = 0
    headers_read: int = 0  # photos indexed before metadata was kept whose headers were read for it (no decode)
    signed: int = 0  # photos indexed before signatures were kept, decoded for one (no model)
    tagged: int = 0  # contents whose tags were computed (new ones; all of them when the vocabulary or model changed)
    words_named: int = 0  # files whose names and carried words (XMP, IPTC, EXIF) were kept (indexer.words)
    words_read: int = 0  # pictures looked at for text (the gate, and the whole reading where it found some)
    words_with_text: int = 0  # of those, pictures in which text was read
    words_failed: int = 0  # of those, pictures the models choked on (they have no words; the rest is indexed)
    faces_on: bool = False  # the faces stage ran (index --faces on): the report says what it did
    faced: int = 0  # contents whose faces were looked for
    faces_found: int = 0
    faces_failed: int = 0  # contents the detector could not look at (they stay indexed, without faces)
    faces_grouped: int = 0  # faces placed with a person, known or new
    faces_dropped: dict[str, Any] | None = None  # --faces off: {"faces", "people", "named"} that went with it
    failed: list[dict[str, str]] = field(default_factory=list)
    noted: list[dict[str, str]] = field(default_factory=list)  # indexed, with a note ({path, note}): a JPEG cut short
    seconds: float = 0.0
    model_seconds: float = 0.0  # what the model spent on the stored batches: near ``seconds``, the model set the pace
    interrupted: bool = False  # by Ctrl-C or SIGTERM: what was done is committed, the rest is for the next run
    terminated: bool = False  # by SIGTERM
    gpu_decoded: int | None = None  # JPEGs nvJPEG decoded; None when the GPU decoded none by design
    notes: list[str] = field(default_factory=list)  # what the run changed on its own (a smaller batch), for the user

    def dropped_faces(self, dropped: dict[str, Any]) -> None:
        """``index --faces off`` deleted these ({"faces", "people", "named"}): said in --json and as a note, for
        every name the user gave went with them."""
        self.faces_dropped = dropped
        named = dropped["named"]
        who = f" ({len(named)} named: {', '.join(named[:8])}{', ...' if len(named) > 8 else ''})" if named else ""
        self.notes.insert(0, f"faces off: dropped {counted(dropped['faces'], 'face')} and "
                             f"{counted(dropped['people'], 'person', 'people')}{who}")

    def fail(self, path: str, error: str) -> None:
        self.failed.append({"path": path, "error": error})

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("added", "updated", "removed", "renamed", "unchanged", "headers_read", "signed",
                                             "tagged", "failed")}
        if self.words_named or self.words_read:
            out["words"] = {"named": self.words_named, "read": self.words_read, "with_text": self.words_with_text,
                            "failed": self.words_failed}
        out["seconds"] = round(self.seconds, 3)
        out["model_seconds"] = round(self.model_seconds, 3)
        if self.faces_on:
            out["faces"] = {"photos": self.faced, "found": self.faces_found, "failed": self.faces_failed,
                            "grouped": self.faces_grouped}
        if self.faces_dropped is not None:
            out["faces_dropped"] = dict(self.faces_dropped)
        if self.gpu_decoded is not None:
            out["gpu_decoded"] = self.gpu_decoded
        if self.interrupted:
            out["interrupted"] = True
        if self.terminated:
            out["terminated"] = True
        if self.notes:
            out["notes"] = list(self.notes)
        if self.noted:
            out["noted"] = list(self.noted)
        return out


class Progress:
    """What the run tells a watching person; the CLI supplies a tqdm-backed one."""

    def found(self, n: int = 1) -> None: ...
    def done(self, n: int = 1) -> None: ...
    def close(self) -> None: ...
