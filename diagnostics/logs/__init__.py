"""Reading a vLLM start-up log: patterns (the regexes), lines (prefixes, tqdm), figures (printed numbers),
outcome (root cause and phase), reader (read_log, an ordered table of line rules), record (LogRecord)."""
