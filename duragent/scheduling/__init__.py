"""Schedules: work an agent (or a person) sets up to run later, kept as files in the data directory.

`spec` is the schedule document (one YAML file each) and when it fires; `store` keeps the
documents and their run history (files, or PostgreSQL for stateless workers, where `run_locks`
tells every worker which runs go on); `service` is the timer that claims each due run once and
hands it to `delivery`, which reaches the session.
"""
