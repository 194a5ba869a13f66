"""Git: the one owner of the data repository, the background committer, history queries."""
