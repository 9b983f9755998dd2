"""One error root for nijifeed.

Every error that is the user's to fix (a setting, a path, a model file, a credential, a bad image) derives from
``NijifeedError``; the faces turn exactly these into one line, and any other exception keeps its traceback,
because it is a bug. Each part defines its own error next to its code and maps the lower library's errors into
it at its boundary (the X client maps tweepy's and requests', the decoder Pillow's)::

    NijifeedError
    ├── ConfigError            a setting has a bad value (service.config)
    ├── StoreError             the store cannot be used as asked (service.store)
    │   └── SchemaTooNewError  written by a newer nijifeed
    ├── ModelError             a model file is missing, unreadable or made for other features (service.classify)
    ├── ExtractorError         an ONNX model or preset cannot serve as a feature extractor (service.features)
    │   ├── PresetError
    │   └── ModelLoadError
    │       └── ModelNotFoundError
    ├── ImageError             one image cannot be read or decoded (service.features.images)
    ├── SourceError            a poll failed (service.sources)
    ├── ForwardError           a delivery failed (service.feed.forward)
    ├── UndoError              an answer cannot be undone (service.store)
    ├── TrainingError          too little to learn from (service.classify)
    └── AlreadyRunning         another daemon holds the data dir's lock (service.daemon)
"""

from __future__ import annotations


class NijifeedError(Exception):
    """Something the user can fix; the message says what. Faces print it as one line, without a traceback."""

    #: The faces' exit status for this kind of error.
    exit_code = 1


class InputError(NijifeedError):
    """An argument names something that does not exist or cannot be used: a folder, an id, a status, a name."""


class TrainingError(NijifeedError):
    """Too little to learn from (fewer than the minimum images of a class)."""
