"""`manage.py new-resource`: writes a resource like `posts` from the templates in `templates/`.

- `spec.py`: the resource and its fields, checked (names, types) before anything is written;
- `field_types.py`: what each `--field` type becomes in the model, the schemas and the tests;
- `generator.py`: renders the templates, writes every file or none;
- `registration.py`: the resource added to app/models/__init__.py, app/router.py, app/errors.py;
- `formatting.py`: ruff on what was written (and Alembic's post-write hook for new revisions).
"""
