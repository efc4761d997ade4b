"""flower_edge.common: what every command shares, torch-free.

- errors.py: the one error hierarchy, and ``one_line_errors``, the one CLI error policy (one line
  on stderr and exit 1; --debug re-raises; Ctrl-C exits 130 with one line);
- files.py: atomic writes, full-disk messages, a folder replaced whole;
- processes.py: one writer per file, Ctrl-C deferred across a commit, what killed runs left,
  native libraries' stderr silenced;
- progress.py: progress lines for logs and pipes;
- output.py: where a command may write (never an input, nor a folder of yours) and how it prints;
- options.py: the typer options of flower-train, flower-export and flower-bench, made from their
  config dataclasses, and the --json/--quiet/--debug options they share.

Depends on numpy and typer at most; the no-torch test covers it with runtime/.
"""
