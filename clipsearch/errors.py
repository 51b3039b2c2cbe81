"""Errors that are the user's to fix: the CLI prints their message as one line, no traceback."""


class UserError(Exception):
    """A mistake or a condition the user can act on (missing folder, no index, unknown model)."""


class IndexLocked(UserError):
    """Another process is writing to the same index."""


class NotInIndex(UserError):
    """Something asked for by its id (or name) that the index does not hold: the server answers 404."""


class NoSuchPhoto(NotInIndex):
    """A photo id the index does not hold (the server answers 404)."""


class NoSuchPerson(NotInIndex):
    """A person id or name the index does not hold (the server answers 404, as for a photo)."""


class FileGone(UserError):
    """A photo the index holds whose file can no longer be read (moved, deleted, unmounted): the server answers 404."""


class FileChanged(UserError):
    """What sits at an indexed path is no longer the file that was indexed (edited, replaced, a link, a pipe): the
    server answers 409 rather than serve it."""


class DamagedIndex(UserError):
    """An index file fails its checksum or cannot be read as what it should be: never served as an answer;
    ``clipsearch check --repair`` mends it (the server answers 503)."""


class ReadOnlyIndex(UserError):
    """The index exists but this process may not write to it (a read-only mount, another user's index)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, what systemd and `docker stop` send: handled as Ctrl-C (what is done is committed), exit 143."""
