"""``LoggingHandler``: log lines that do not break progress bars, as ``sentence_transformers.LoggingHandler``."""

from __future__ import annotations

import logging
import sys

__all__ = ["LoggingHandler"]


class LoggingHandler(logging.Handler):
    """Writes records through ``tqdm.write`` when tqdm is installed (so bars stay intact), else to stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            try:
                from tqdm import tqdm
            except ImportError:
                sys.stderr.write(message + "\n")
            else:
                tqdm.write(message)
            self.flush()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            self.handleError(record)
