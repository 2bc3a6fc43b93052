"""The generated config reference must match the schema (run `python -m pipeline.tools.docs` to refresh)."""

from pipeline.tools.docs import targets


def test_generated_docs_are_current() -> None:
    stale = [str(p) for p, text in targets().items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date, run `python -m pipeline.tools.docs`: {stale}"


def test_every_field_is_described() -> None:
    from pipeline.tools.docs import SECTIONS

    missing = [f"{title}.{name}" for title, model in SECTIONS for name, f in model.model_fields.items()
               if name not in ("path", "kind") and not f.description]
    assert not missing, missing
