"""Background jobs: long work (stimulus generation, later machine scores) outside the web process.

The `jobs` table is the queue and the progress board. Modules:
- kinds.py: the registry of job kinds (a kind = a function + its params); open to new kinds.
- service.py: submit, list, cancel, resume, claim and reap jobs (DB session first, no HTTP).
- context.py: what a running job reports through (progress, log, cancel checks, heartbeat).
- runner.py: the runner interface, and `run_claimed_job`, the unit of work any runner runs.
- local.py: the default runner, a local worker process (`psychinterp worker` or `serve`).
- generation.py: the `generate_study` kind.
"""
