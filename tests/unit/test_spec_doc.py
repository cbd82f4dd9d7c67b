"""docs/job-spec.md is the spec model's own documentation: regenerate it when a field changes."""

from distsearch.spec import doc as spec_doc
from distsearch.spec.model import JobSpec

from ..conftest import ROOT


def test_the_reference_page_matches_the_model():
    page = (ROOT / "docs" / "job-spec.md").read_text()
    assert page == spec_doc.render(), "docs/job-spec.md is stale: run python -m distsearch.spec.doc > docs/job-spec.md"


def test_every_field_is_on_the_page():
    page = spec_doc.render()
    for name, info in JobSpec.model_fields.items():
        sub = getattr(info.annotation, "model_fields", None)
        for field in [f"{name}.{s}" for s in sub] if sub else [name]:
            assert f"| `{field}` |" in page, field


def test_no_field_description_carries_a_timing_or_a_date():
    import re

    page = spec_doc.render()
    assert not re.search(r"\d+(\.\d+)? ?s to|20\d\d-\d\d-\d\d|on 2 cores", page)
