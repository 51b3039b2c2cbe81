"""Faces in one picture: dlib's frontal face detector (HOG), its 5-point landmarks and its ResNet's 128-d descriptor.

The picture is read at a bounded size: ``MAX_SIDE`` pixels on its longer side, a JPEG decoded in the DCT domain at
1/2 to 1/8 scale first (``clipsearch.images.decode``), so a 12 MP photo costs about what a 2 MP one does and a huge
one never lies whole in memory. HOG looks through an 80 px window: a picture read at no more than half of
``MAX_SIDE`` is looked at twice as large too (no dearer than the largest picture), a larger one is not (four
times the cost), so a face less than ~80 px tall in the picture as read (5% of its longer side) or blurred past
its edges is simply not found; bench/faces.py has recall by face size. Boxes and landmarks come back in the pixels of
the upright picture at its full size. Two descriptors closer than ``DISTANCE`` are the same person (dlib's
threshold: 99.38% on LFW).

dlib (the ``dlib-bin`` wheel) and the models (the ``face-recognition-models`` package) are imported here only:
``pip install 'clipsearch[faces]'``. The models are found without importing that package (its ``__init__``
needs pkg_resources). A model holds buffers of its own: one per thread (``FaceModel.for_this_thread``).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch import images
from clipsearch.errors import UserError
from clipsearch.store.faces import Face

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MAX_SIDE = 1600  # the longer side a picture is read at (bench/faces.py: recall by face size, photos/s)
DISTANCE = 0.6  # dlib's same-person threshold on the Euclidean distance of two descriptors
_PACKAGES = {"dlib": "dlib-bin", "face_recognition_models": "face-recognition-models"}
_local = threading.local()


def missing() -> str | None:
    """Why faces cannot be looked for on this machine (one line), or None."""
    absent = [wheel for module, wheel in _PACKAGES.items() if importlib.util.find_spec(module) is None]
    if absent:
        return f"faces need {' and '.join(absent)}: pip install 'clipsearch[faces]'"
    return None


def _models() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(missing() or "the face_recognition_models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceModel:
    """dlib's detector, landmark predictor and descriptor network, loaded once per thread."""

    def __init__(self) -> None:
        import dlib

        folder = _models()
        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        self._dlib = dlib

    @classmethod
    def for_this_thread(cls) -> FaceModel:
        model = getattr(_local, "model", None)
        if model is None:
            model = _local.model = cls()
        return model

    def faces(self, picture: np.ndarray, scale: float = 1.0, upsample: int | None = None) -> list[Face]:
        """The faces in an RGB picture (height x width x 3, uint8), boxes and landmarks divided by ``scale`` (the
        size it was read at over its full size). ``upsample``: HOG's (None: once for a picture of at most half of
        ``MAX_SIDE``, else not)."""
        import numpy as np

        picture = np.ascontiguousarray(picture)
        height, width = picture.shape[:2]
        if upsample is None:
            upsample = 1 if 2 * max(height, width) <= MAX_SIDE else 0
        found = self._detector(picture, upsample)
        if len(found) == 0:
            return []
        shapes = self._dlib.full_object_detections()
        for rect in found:
            shapes.append(self._shapes(picture, rect))
        descriptors = self._net.compute_face_descriptor(picture, shapes)
        out = []
        for rect, shape, descriptor in zip(found, shapes, descriptors):
            left, top = max(0, rect.left()), max(0, rect.top())
            right, bottom = min(width, rect.right() + 1), min(height, rect.bottom() + 1)
            box = tuple(round(v / scale) for v in (left, top, right - left, bottom - top))
            points = np.array([(p.x / scale, p.y / scale) for p in shape.parts()], dtype="float32")
            out.append(Face(box, points, np.array(descriptor, dtype="float32")))  # type: ignore[arg-type]
        return out


def read(data: bytes, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """A photo's bytes as an upright RGB array at most ``max_side`` on its longer side, and its scale (array size
    over full size). Raises ``clipsearch.images.ImageError``."""
    import numpy as np

    width, height = images.probe(data)
    shrink = min(1.0, max_side / max(width, height, 1))
    decoded = images.decode(data, max(1, math.floor(min(width, height) * shrink)))
    picture: Image.Image = decoded.image
    if max(picture.size) > max_side:
        picture = picture.copy()
        picture.thumbnail((max_side, max_side))
    return np.asarray(picture.convert("RGB")), picture.width / max(decoded.width, 1)


def crop(data: bytes, box: tuple[int, int, int, int], side: int = 160) -> bytes:
    """A JPEG of a face (``box`` in full-size pixels) with a margin around it, at most ``side`` pixels square: what
    the People view shows. Raises ``clipsearch.images.ImageError``."""
    import io

    from PIL import Image

    picture, scale = read(data)
    x, y, w, h = (v * scale for v in box)
    margin = 0.35 * max(w, h)
    face = Image.fromarray(picture).crop((int(max(0, x - margin)), int(max(0, y - margin)),
                                          int(min(picture.shape[1], x + w + margin)),
                                          int(min(picture.shape[0], y + h + margin))))
    face.thumbnail((side, side))
    out = io.BytesIO()
    face.save(out, "JPEG", quality=85)
    return out.getvalue()


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b`` (a matrix product: BLAS, not a Python loop)."""
    import numpy as np

    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))
