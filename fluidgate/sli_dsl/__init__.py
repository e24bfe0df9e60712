"""The policy language: grammar, parser, unit handling and the semantic checker."""
