"""Reading backups and restoring them: the machinery under the `backups` and `drills` kinds.

- store.py       backup stores (S3, a folder): listing and streaming objects, with deadlines
- integrity.py   whether a backup's bytes are what its format says (gzip, pg_dump custom, plain)
- plain_dump.py  refusing plain dumps that hold what pg_dump never writes (psql meta-commands, PROGRAM)
- restore.py     a drill's restore into a throwaway PostgreSQL or a scratch database, in phases
- reaper.py      the watcher that removes what a drill left when its process died (standard library only)
"""
