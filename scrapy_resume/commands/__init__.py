"""``scrapy checkpoint``: list, report, show, export, reset and clean up stages.

Made a Scrapy command by the ``scrapy.commands`` entry point in setup.cfg.
"""

from scrapy_resume.commands.checkpoint import CheckpointCommand

__all__ = ["CheckpointCommand"]
