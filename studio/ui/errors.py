"""The UI boundary for errors: a StudioError becomes its message, anything else a logged bug."""

import functools
import logging

import gradio as gr

from studio.errors import StudioError

log = logging.getLogger("studio.ui")


def shown_to_user(callback):
    """Wrap a callback so the user sees a plain message and never a traceback."""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except StudioError as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception:
            log.exception("Unexpected error in %s", callback.__name__)
            raise gr.Error("Something went wrong that the studio did not expect. The details are in the studio's log; please report them.", print_exception=False) from None

    return wrapper
