# The smoke test is a plain script run by .ci/run (it starts `make run` itself); pytest must
# not collect it, whatever python_files is set to.
collect_ignore = ["smoke_make_run.py"]
