"""The web console at ``/console``: server-rendered pages over the public ``/v1`` API."""
