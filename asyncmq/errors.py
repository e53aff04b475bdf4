"""Every exception asyncmq raises or records.

    AsyncMQError
    ├── ConfigurationError          settings, URLs, a missing optional dependency
    ├── UnsupportedError (NotImplementedError) the backend cannot do this
    ├── InvalidJobError (ValueError) rejected before anything is stored
    │   ├── InvalidQueueNameError
    │   ├── SerializationError      arguments that cannot be encoded
    │   ├── PayloadTooLargeError
    │   ├── InvalidScheduleError    a bad cron expression, `every` or delay
    │   ├── TaskArgumentsError (TypeError) arguments that do not fit the task's signature
    │   └── UnknownParentError      `depends_on` names a job that does not exist
    ├── JobNotFoundError (KeyError)
    ├── JobResultError              `Queue.result`: the job will never have a result
    │   ├── JobFailedError          it failed: the task's error type and message
    │   ├── JobExpiredError         it was not started within its ttl
    │   ├── JobCancelledError       it was cancelled
    │   └── JobGoneError            its record is gone (removed, or past its retention);
    │                               also a JobNotFoundError
    ├── MalformedJobError           a stored record that cannot be read back
    ├── MalformedScheduleError      a stored schedule that cannot be read back
    └── JobFailure                  recorded on a job when an attempt fails
        ├── JobTimeoutError         the attempt ran past its timeout
        ├── StalledJobError         its worker vanished too many times
        ├── ParentFailedError       a parent it depends on ended without completing
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
    "JobCancelledError",
    "JobExpiredError",
    "JobFailedError",
    "JobFailure",
    "JobGoneError",
    "JobNotFoundError",
    "JobResultError",
    "JobTimeoutError",
    "MalformedJobError",
    "MalformedScheduleError",
    "NonRetryableError",
    "ParentFailedError",
    "PayloadTooLargeError",
    "ResultSerializationError",
    "SerializationError",
    "StalledJobError",
    "TaskArgumentsError",
    "UnknownParentError",
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


class TaskArgumentsError(InvalidJobError, TypeError):
    """A job's arguments do not fit its task's signature (too many, one missing, an unknown
    keyword), or an enqueue option is also a parameter of the task. Raised where the task is
    defined in the producing process; a `TypeError` too, as the call itself would raise."""


class UnknownParentError(InvalidJobError):
    """`depends_on` names a job that does not exist (nothing was stored)."""


class JobNotFoundError(AsyncMQError, KeyError):
    """No job with that id exists in that queue."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class JobResultError(AsyncMQError):
    """`Queue.result` found the job ended without a result (or gone), so waiting longer
    cannot help. `job_id`, `queue` and `state` (the job's status, or `None` when its record
    is gone) say which job and how it ended."""

    def __init__(self, message: str, *, job_id: str, queue: str, state: str | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.queue = queue
        self.state = state


class JobFailedError(JobResultError):
    """The job failed: `error_type` and `error_message` are those its task raised (the last
    attempt's), `traceback` the one stored with them, if any."""

    def __init__(
        self,
        *,
        job_id: str,
        queue: str,
        error_type: str,
        error_message: str,
        traceback: str | None = None,
    ) -> None:
        detail = f"{error_type}: {error_message}" if error_message else error_type
        super().__init__(
            f"job {job_id} of queue {queue!r} failed: {detail}", job_id=job_id, queue=queue, state="failed"
        )
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class JobExpiredError(JobResultError):
    """The job was not started within its `ttl`: it never ran."""


class JobCancelledError(JobResultError):
    """The job was cancelled before it finished."""


class JobGoneError(JobResultError, JobNotFoundError):
    """The job's record was deleted while `Queue.result` waited for it (`remove_job`, a
    drain, the queue deleted) or, finished, after its retention (`result_ttl`,
    `keep_finished`): its result, if it had one, is lost."""


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


class ParentFailedError(JobFailure):
    """A parent the job depends on failed, expired or was cancelled (`on_parent_failure="fail"`):
    the job fails without running."""


class NonRetryableError(JobFailure):
    """Retrying cannot help: the job goes to the dead-letter queue at once."""


class UnknownTaskError(NonRetryableError):
    """No task with the job's task id is registered in the worker."""


class ResultSerializationError(NonRetryableError):
    """The task returned a value that cannot be encoded as JSON."""
