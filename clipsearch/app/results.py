"""What the application layer answers with: plain dataclasses, each with ``as_dict()`` giving the JSON that
``--json``, the HTTP API and the Python API share (one shape, written once).

Hits (``search.query.Hit``), labels (``search.classify.Classified``) and a run's report
(``indexer.report.Report``) are dataclasses of their own modules, re-exported by ``clipsearch.app``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TagCount:
    tag: str
    photos: int

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "photos": self.photos}


@dataclass(frozen=True)
class GroupMember:
    path: str
    id: int
    score: float  # cosine to the keeper's vector (1.0 for the keeper and identical files)
    width: int
    height: int
    size: int
    taken: str | None
    keep: bool


@dataclass(frozen=True)
class DuplicateGroup:
    """Copies of one photo (``level`` copy or identical), or similar shots (``level`` similar): the keeper first."""

    level: str
    keep: str  # the suggested keeper's path
    reason: str  # why it is the keeper, in a few words
    members: list[GroupMember]

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "keep": self.keep, "reason": self.reason,
                "members": [asdict(m) for m in self.members]}

    @classmethod
    def from_dict(cls, group: dict[str, Any]) -> DuplicateGroup:
        return cls(group["level"], group["keep"], group["reason"], [GroupMember(**m) for m in group["members"]])


@dataclass(frozen=True)
class Duplicates:
    groups: list[DuplicateGroup]
    unsigned: int = 0  # photos an older clipsearch indexed without a signature: only identical files among them

    def copies_to_drop(self) -> list[str]:
        """The paths the suggestion would not keep, copies only (similar shots are other photos)."""
        return [m.path for g in self.groups if g.level != "similar" for m in g.members if not m.keep]


@dataclass(frozen=True)
class Info:
    """What ``clipsearch info`` shows. The typed fields are the ones most callers want; ``details`` is all of it."""

    index: str
    images: int
    model: str | None
    dim: int | None
    roots: list[str]
    failing_files: int
    generation: int
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Info:
        return cls(data["index"], data["images"], data["model"], data["dim"], list(data["roots"]),
                   data["failing_files"], data["generation"], dict(data))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.details)


@dataclass(frozen=True)
class Failure:
    path: str
    error: str
    size: int | None = None
    mtime_ns: int | None = None
    indexed: bool = False  # indexed as far as it decodes (a JPEG cut short); ``error`` is the decoder's note

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    """``problems``: what was found; ``remaining``: what is still wrong (after a repair, what it could not mend);
    ``lost``: what a repair of a damaged catalog could not save; ``lost_paths``: the photos a repair drops (or, for
    a check, would drop), named as the user knows them: the next ``index`` run embeds again the ``reembeds`` of them whose
    stored vector is lost or damaged and finds the others again (a damaged path), their vectors reused;
    ``notes``: what is so but is not wrong (a FAISS file an interrupted run did not write yet).

    A check's preview is the repair's outcome: both come from one diagnosis (``clipsearch.store.check``)."""

    problems: list[str]
    remaining: list[str]
    repaired: bool
    lost: str | None = None
    lost_paths: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reembeds: int = 0  # of ``lost_paths``, those the next run embeds again (their vector lost); it finds the others

    @property
    def ok(self) -> bool:
        """Nothing wrong, or everything mended with nothing lost (the exit code: 0 only then)."""
        return not self.remaining and not self.lost and not (self.repaired and self.lost_paths)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "repaired": self.repaired,
                **({"notes": self.notes} if self.notes else {}),
                **({"lost_photos": len(self.lost_paths), "lost_paths": self.lost_paths, "reembeds": self.reembeds}
                   if self.lost_paths else {}),
                **({"lost": self.lost} if self.lost else {})}
