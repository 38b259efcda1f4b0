"""The keys scrapy-resume sets in ``request.meta``, in one place."""

#: The ledger key of a logical request. Set when it is first scheduled, copied
#: by Scrapy to its retries and redirects. Read it, never set it.
KEY_META = "checkpoint_key"

#: The lease on a request taken from a shared scrapy-redis queue (see store/redis_leases.py):
#: released by the commit that settles the request.
LEASE_META = "checkpoint_lease"

#: Internal tag on a request between its creation and ``request_scheduled``:
#: ``(origin, ordinal)``. Popped when the request is scheduled, so that retries
#: (which copy meta) never see it and it is never serialized.
ORIGIN_META = "_checkpoint_origin"


#: Internal tag on a start request of a shared stage, between ``request_scheduled``
#: and the shared queue's push, which claims it for this worker in the same step
#: (components/leasedqueue.py). Popped by the push, so it is never serialized.
CLAIM_META = "_checkpoint_claim"


#: ``meta["checkpoint_skip"] = True``: do not checkpoint this request at all.
#: Set by the user.
SKIP_META = "checkpoint_skip"

#: The meta key of the request :meth:`CheckpointRuntime.wake_engine` sends.
WAKE_META = "checkpoint_wake"
