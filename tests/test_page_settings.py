"""Issue 20: every setting the participant page honours is in the study YAML, validated,
and sent (layout.iti_ms, layout.max_side, layout.example_image_url,
completion.redirect_delay_ms, comprehension), with IMI's values by default; the
comprehension questions come from the study's paradigm unless the YAML sets its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.api.participant_contract import PublicStudy
from server.errors import AppError
from server.studies.loading import parse_study_yaml
from server.studies.sessions import comprehension_questions, public_study_info

STUDIES = Path(__file__).parents[1] / "studies"


def _yaml(name: str = "imi-demo.yaml", **changes) -> str:
    config = yaml.safe_load((STUDIES / name).read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return yaml.safe_dump(config, sort_keys=False)


def test_defaults_are_imis():
    config = parse_study_yaml(_yaml())
    assert config.layout.max_side == "right"  # "Right Examples" hold the max references
    assert config.layout.iti_ms == 500
    assert config.layout.example_image_url == "/static/img/example-trial.jpg"
    assert config.completion.redirect_delay_ms == 4000
    assert config.comprehension is None  # the paradigm's questions


def test_yaml_values_are_taken():
    config = parse_study_yaml(
        _yaml(
            layout__iti_ms=800,
            layout__max_side="left",
            completion__redirect_delay_ms=0,
            comprehension=[{"question": "Ready?", "options": ["no", "yes"], "answer": 1}],
        )
    )
    assert (config.layout.iti_ms, config.layout.max_side) == (800, "left")
    assert config.completion.redirect_delay_ms == 0
    assert comprehension_questions(config) == [
        {"question": "Ready?", "options": ["no", "yes"], "answer": 1}
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layout__iti_ms": -1}, "layout.iti_ms"),
        ({"layout__max_side": "top"}, "layout.max_side"),
        ({"layout__example_image_url": "https://example.org/x.jpg"}, "not a file under web/static"),
        ({"layout__example_image_url": "/static/../server/app.py"}, "not a file under web/static"),
        ({"layout__example_image_url": "/static/img/missing.jpg"}, "not a file under web/static"),
        ({"completion__redirect_delay_ms": 120_000}, "completion.redirect_delay_ms"),
        (
            {"comprehension": [{"question": "Q", "options": ["a", "b"], "answer": 2}]},
            "count from 0",
        ),
        ({"comprehension": [{"question": "Q", "options": ["only"], "answer": 0}]}, "options"),
        ({"comprehension": [{"question": "Q", "options": ["a", "b"], "answer": 0, "x": 1}]}, "x"),
    ],
)
def test_bad_values_are_refused_with_the_field(changes, message):
    with pytest.raises(AppError) as error:
        parse_study_yaml(_yaml(**changes), "study.yaml")
    assert message in str(error.value)
    assert "study.yaml:" in str(error.value)  # file:line


def test_comprehension_follows_the_paradigm():
    imi = parse_study_yaml(_yaml())
    questions = comprehension_questions(imi)
    assert len(questions) == 3 and all(q["answer"] < len(q["options"]) for q in questions)
    # Worded with the study's own column titles and confidence levels.
    titled = parse_study_yaml(
        _yaml(
            layout__reference_columns_titles={
                "min": "Minimally activating",
                "max": "Maximally activating",
            },
            layout__confidence_levels=5,
        )
    )
    right = comprehension_questions(titled)[0]
    assert (
        right["options"][right["answer"]] == "The one that matches the Maximally activating better"
    )
    assert "1 … 5" in comprehension_questions(titled)[2]["question"]
    # Occlusion studies ask none of the 2AFC questions (the page then skips the check);
    # `comprehension: []` turns the check off for a 2AFC study too (IMI's own design).
    assert comprehension_questions(parse_study_yaml(_yaml("occlusion-demo.yaml"))) == []
    assert comprehension_questions(parse_study_yaml(_yaml(comprehension=[]))) == []
    assert comprehension_questions(parse_study_yaml(_yaml("imi2023-natural.yaml"))) == []


def test_served_study_carries_the_settings(live_study):
    from server.db.session import session_scope

    _settings, factory, study = live_study

    with session_scope(factory) as db:
        info = public_study_info(db, study.slug)
    PublicStudy.model_validate(info)
    assert info["layout"]["iti_ms"] == 500 and info["layout"]["max_side"] == "right"
    assert info["layout"]["example_image_url"] == "/static/img/example-trial.jpg"
    assert info["completion"]["redirect_delay_ms"] == 4000
    assert [q["answer"] for q in info["comprehension"]] == [1, 2, 0]
