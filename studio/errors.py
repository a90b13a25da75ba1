"""Typed errors whose message is written for the person using the studio.

The UI turns a StudioError into a visible message, the CLI into exit code 2;
anything else is a bug and is logged with its traceback.
"""


class StudioError(Exception):
    """An error with a plain-language message that says what is wrong and what to do."""


class DataError(StudioError):
    """An uploaded or given data file cannot be used."""


class ModelError(StudioError):
    """A base model cannot be found, loaded or trusted."""


class SettingsError(StudioError):
    """An environment setting has a value the studio cannot use."""


class NotFound(StudioError):
    """A named dataset, job or adapter does not exist in the store."""


class Gone(NotFound):
    """A record that was deleted: its name stays for what points at it, but it cannot be used."""


class DeleteRefused(StudioError):
    """Something cannot be deleted now: a job uses it, it is in use, or the person may not delete it."""


class SpecError(StudioError):
    """A training setting is out of range or contradicts another."""


class JobError(StudioError):
    """A job cannot be started, cancelled or resumed in its current state."""


class TrainingDiverged(JobError):
    """The loss stopped being a number: the run cannot recover, so it stops at once."""


class ChatError(StudioError):
    """A chat cannot start: a bad model choice, generation setting or too little memory."""


class EvaluationError(StudioError):
    """An adapter cannot be evaluated, for example for want of validation rows."""


class ExportError(StudioError):
    """An adapter cannot be merged, mixed or packed for download."""


class AdapterImportError(StudioError):
    """An adapter from outside the studio cannot be taken in: unsafe, incomplete, or for a base not here."""


class InUseError(StudioError):
    """No adapter can be put in use, or rolled back to, as asked."""
