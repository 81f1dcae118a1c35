"""The leaderboard: entries (`entry`), boards ranked from them (`board`), their Markdown
and HTML renderings (`render`) and the re-run check of a claimed cell (`verify`).

Entries are data only: reading one parses JSON and never executes or unpickles anything.
"""
