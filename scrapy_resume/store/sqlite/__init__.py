"""The embedded default backend: one SQLite file per stage, in WAL mode.

Only this package speaks SQL:

- ``schema``: the tables and the statements a commit runs;
- ``store``: ``CheckpointStore``, the ledger of one stage file;
- ``files``: a stage file created whole, or moved aside as one file;
- ``lock``: one process per stage, with a kernel lock beside the file;
- ``backend``: ``SqliteBackend``, the directory of stage files.
"""
