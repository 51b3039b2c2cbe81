"""Text read from a picture: rapidocr's PP-OCR models (PP-OCRv6 small detection and recognition, shipped inside its
wheel, run on ONNX Runtime), behind one call.

Reading is 20-40x what embedding a photo costs, and most photos hold no text: each picture is first looked at by
the detection model alone at ``GATE_SIDE`` (a fraction of the full pass), and only one where it finds a text
region is read whole (detection at up to ``READ_SIDE``, orientation, recognition). bench/words.py measures both
sizes, what the gate costs a photo without text and what it misses.

The recognition model reads Chinese (simplified and traditional), Japanese and Latin-script languages (English,
French, German, Spanish, ... with their accents); not Cyrillic, Greek, Arabic, Hebrew, Korean or Indic scripts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

READ_SIDE = 1600  # the longest side a picture is read at: a huge photo costs what a 2 MP one does
GATE_SIDE = 480  # the longest side the gate's detection runs at (bench/words.py: its cost and what it misses)
MIN_SCORE = 0.5  # lines recognised with less confidence are left out (rapidocr's own default)


@dataclass(frozen=True)
class Seen:
    """What a picture shows written: the lines read (top to bottom), each with its box as four corners in 0..1 of
    the picture's width and height; ``how`` is ``read``, ``none`` (the gate found no text) or ``failed: ...``."""

    text: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    how: str = "read"


class Reader:
    """The models, loaded once (about 3 s) and kept; one reading at a time (rapidocr's engines are not shared)."""

    def __init__(self, gate_side: int | None = GATE_SIDE, read_side: int = READ_SIDE) -> None:
        import logging

        from rapidocr import RapidOCR

        quiet = {"Global.log_level": "error"}
        self._read = RapidOCR(params={**quiet, "Global.max_side_len": read_side})
        self._gate = None if gate_side is None else RapidOCR(params={
            **quiet, "Det.limit_type": "max", "Det.limit_side_len": gate_side, "Global.use_cls": False,
            "Global.use_rec": False})
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.read_side = read_side
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> Seen:
        """The text in ``image`` (RGB, upright). An error inside the models is this picture's ``failed`` only."""
        import numpy as np

        try:
            image = _bounded(image, self.read_side)
            pixels = np.asarray(image)[:, :, ::-1]  # rapidocr takes OpenCV's BGR order
            with self._lock:
                if self._gate is not None and self._gate(pixels).boxes is None:
                    return Seen("", [], "none")
                found = self._read(pixels)
        except Exception as exc:  # noqa: BLE001 - a picture the models choke on costs its own words only
            return Seen("", [], f"failed: {type(exc).__name__}: {str(exc)[:200]}")
        if found.boxes is None or not found.txts:
            return Seen("", [], "read")
        width, height = image.size
        lines, boxes = [], []
        for box, line, score in zip(found.boxes, found.txts, found.scores):
            line = " ".join(str(line).split())
            if not line or score < MIN_SCORE:
                continue
            lines.append(line)
            corners = [[round(float(x) / width, 4), round(float(y) / height, 4)] for x, y in box]
            boxes.append({"text": line, "box": corners, "score": round(float(score), 3)})
        return Seen("\n".join(lines), boxes, "read")


def _bounded(image: Image.Image, side: int) -> Image.Image:
    from PIL import Image as PILImage

    image = image.convert("RGB")
    if max(image.size) > side:
        scale = side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             PILImage.Resampling.LANCZOS)
    return image
