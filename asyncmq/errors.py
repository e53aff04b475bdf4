"""Every exception asyncmq raises or records.

    AsyncMQError
    ├── ConfigurationError          settings, URLs, a missing optional dependency
    ├── UnsupportedError (NotImplementedError) the backend cannot do this
    ├── InvalidJobError (ValueError) rejected before anything is stored
    │   ├── InvalidQueueNameError
    │   ├── SerializationError      arguments that cannot be encoded
    │   ├── PayloadTooLargeError
    │   └── InvalidScheduleError    a bad cron expression, `every` or delay
    ├── JobNotFoundError (KeyError)
    ├── MalformedJobError           a stored record that cannot be read back
    ├── MalformedScheduleError      a stored schedule that cannot be read back
    └── JobFailure                  recorded on a job when an attempt fails
        ├── JobTimeoutError         the attempt ran past its timeout
        ├── StalledJobError         its worker vanished too many times
        └── NonRetryableError       goes to the dead-letter queue at once
            ├── UnknownTaskError
            └── ResultSerializationError

Tasks may raise `NonRetryableError` themselves to skip the remaining retries.
"""

from __future__ import annotations

__all__ = [
    "AsyncMQError",
    "ConfigurationError",
    "InvalidJobError",
    "InvalidQueueNameError",
    "InvalidScheduleError",
    "JobFailure",
    "JobNotFoundError",
    "JobTimeoutError",
    "MalformedJobError",
    "MalformedScheduleError",
    "NonRetryableError",
    "PayloadTooLargeError",
    "ResultSerializationError",
    "SerializationError",
    "StalledJobError",
    "UnknownTaskError",
    "UnsupportedError",
]


class AsyncMQError(Exception):
    """Base class of every asyncmq error."""


class ConfigurationError(AsyncMQError):
    """Settings, a backend URL or an installed extra are not usable."""


class UnsupportedError(AsyncMQError, NotImplementedError):
    """The backend cannot do this at all (the in-memory one cannot share events between
    processes): another backend can, no setting will."""


class InvalidJobError(AsyncMQError, ValueError):
    """A job was rejected before anything was stored."""


class InvalidQueueNameError(InvalidJobError):
    """A queue name is empty or holds characters that storage keys cannot carry."""


class SerializationError(InvalidJobError):
    """A job's arguments cannot be encoded as JSON."""


class PayloadTooLargeError(InvalidJobError):
    """A job's encoded arguments exceed `Settings.max_payload_bytes`."""


class InvalidScheduleError(InvalidJobError):
    """A cron expression, `every` interval or delay is not valid."""


class JobNotFoundError(AsyncMQError, KeyError):
    """No job with that id exists in that queue."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MalformedJobError(AsyncMQError):
    """A stored job record is corrupt or was written by something else."""


class MalformedScheduleError(AsyncMQError):
    """A stored schedule is corrupt or was written by something else: skipped, the others fire."""


class JobFailure(AsyncMQError):
    """Raised inside an attempt by asyncmq itself; recorded like a task's exception."""


class JobTimeoutError(JobFailure):
    """The attempt ran longer than the job's `timeout`."""


class StalledJobError(JobFailure):
    """The job's worker vanished mid-attempt more often than `max_stalls` allows."""


class NonRetryableError(JobFailure):
    """Retrying cannot help: the job goes to the dead-letter queue at once."""


class UnknownTaskError(NonRetryableError):
    """No task with the job's task id is registered in the worker."""


class ResultSerializationError(NonRetryableError):
    """The task returned a value that cannot be encoded as JSON."""
