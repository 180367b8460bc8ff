"""Answers: who connected to what, when and from where (`queries`), the HTML report, the
status of the pipeline, the HTTP bodies and who may read them (`http`, `auth`). Reads what
the write path stored; nothing on the write path imports it."""
