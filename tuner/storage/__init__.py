"""Where studies live: storage URLs, opening storages, the study lock and artifacts."""

from tuner.storage._coordination import (
    LockLost,
    PostgresArtifactStore,
    StudyLock,
    open_artifact_store,
)
from tuner.storage._open import (
    NothingStored,
    ReconnectingStorage,
    is_disconnect,
    open_storage,
    retry_on_disconnect,
)
from tuner.storage._url import (
    ENV_VAR,
    StorageKind,
    default_url,
    embedded_dir,
    kind_of,
    redact,
    resolve_url,
)

__all__ = [
    "ENV_VAR",
    "LockLost",
    "NothingStored",
    "PostgresArtifactStore",
    "ReconnectingStorage",
    "StorageKind",
    "StudyLock",
    "default_url",
    "embedded_dir",
    "is_disconnect",
    "kind_of",
    "open_artifact_store",
    "open_storage",
    "redact",
    "resolve_url",
    "retry_on_disconnect",
]
