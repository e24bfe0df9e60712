"""Exporters: a controller spec turned into configuration that real serving stacks accept.

One module per stack (`vllm`, `sglang`, `dynamo`, `llmd`, `document` for the spec itself),
one registry that names them, and one writer that lays the files down atomically. Each
exporter also says, in words, what of the plan its stack cannot express (`Unmet`), so an
operator never believes a config carries a rule it silently dropped.
"""
