"""The teachers: loremaster, game designer, trajectory writer, reviewers and director.

Two providers implement the roles: the programmatic expert built on the rules engine (the
embedded default, offline and deterministic) and any OpenAI-compatible endpoint through
`openai` + `instructor`. Roles can be mixed: an LLM writer with programmatic reviewers, say.
"""
