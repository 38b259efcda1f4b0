"""The signals scrapy-resume sends (connect to them with ``crawler.signals.connect``),
and the exception a callback raises when it finds its session gone."""

#: Sent before a checkpoint commit marks requests done, when their responses
#: yielded items: ``item_ids`` lists the ids of those items (see
#: :func:`scrapy_resume.item_id`), and ``spider`` is the spider. A pipeline
#: that buffers its writes flushes them here. A handler may return an
#: awaitable (a coroutine or a Deferred): the commit waits for it. If a handler
#: raises, the commit fails: nothing is marked done, and the crawl stops with
#: ``checkpoint_write_error`` (a resume fetches those requests again, and
#: their items come back with the same ids).
checkpoint_before_commit = object()


class SessionExpired(Exception):
    """Raise it from a callback that finds the session gone (a login form where a
    private page should be): the request ends ``failed`` with this reason, not
    ``done``, so a resume with ``CHECKPOINT_RETRY_FAILED=1`` fetches it again
    after a new login. Any exception a callback raises does the same; this one
    names the reason in the ledger and the log."""
