"""The dashboard at `/ui`: server-rendered pages over the library the API uses (docs/dashboard.md)."""
