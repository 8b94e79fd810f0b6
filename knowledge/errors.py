"""Errors the knowledge base raises, each carrying one sentence fit to show a person.

`RagtuneError`, the root of every error ragtune tells a person, lives here because `knowledge`
is the lowest package: every layer above can subclass it without an import running back up.
The whole tree is listed in bot/core/errors.py.
"""


class RagtuneError(Exception):
    """Something to tell a person: the message is one complete sentence."""


class KnowledgeError(RagtuneError):
    """The knowledge base cannot do what was asked."""


class SQLiteUnavailableError(KnowledgeError):
    """No SQLite binding on this Python can load the sqlite-vec extension."""


class EmbedderMismatchError(KnowledgeError):
    """The database was built with a different embedding model."""


class BadDocumentError(KnowledgeError):
    """A document cannot be ingested: unsupported, empty, corrupt or too large."""


class DocumentNotFoundError(KnowledgeError):
    """No document with the given id."""


class NewerSchemaError(KnowledgeError):
    """The database was written by a newer ragtune."""


class ConcurrentWriteError(KnowledgeError):
    """Another writer changed the document after this write was planned: plan it again."""


class ReindexRunningError(KnowledgeError):
    """Another reindex of the same knowledge base is running."""


class CollectionError(KnowledgeError):
    """A collection name is unknown, taken or not a valid name."""
