"""Faces: found in a picture (``detect``: dlib's HOG detector, 5-point landmarks and 128-d ResNet descriptors) and
grouped into people (``grouping``: join the people known, else Chinese whispers among the rest).

dlib and the models (the face_recognition_models package) are imported by the calls that need them:
``pip install 'clipsearch[faces]'``. Storage is ``clipsearch.store.faces`` and ``clipsearch.store.people``; the
indexing stage is ``indexer.faces``.
"""
