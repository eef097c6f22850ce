"""Request and response schemas of the API (pydantic), apart from the table models.

Every string is bounded and free of NUL characters, every number finite and bounded, so
malformed input is refused with the field and the reason before it reaches a database.
"""
