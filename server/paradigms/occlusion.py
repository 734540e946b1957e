"""Occlusion / causal understanding (Zimmermann et al., NeurIPS 2021).

A base image (the most activating natural image of its batch) and two occluded copies of
it; the participant says which occlusion leaves the unit more active ("Which image is more
favored?"). The max query is the occlusion that leaves the activation highest, the min
query the one that leaves it lowest (server/stimuli/occlusion.py). References are the
unit's maximally activating images only ("Favorite Images").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from server.paradigms.base import Paradigm, Section

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

    from server.config import Settings
    from server.db.models import Trial
    from server.studies.schema import StudyConfig

CHOICES = ("query_max", "query_min")


class OcclusionSection(Section):
    """The occlusion task's numbers (defaults: the paper's)."""

    paradigm: Literal["occlusion"] = "occlusion"
    patch_fraction: Literal[0.3, 0.4, 0.5] = Field(
        0.4, description="Side of the square patch as a fraction of the image side."
    )
    stride_px: int = Field(
        2, ge=1, le=224, description="Patch step in pixels of a 224 px image (the paper: 2)."
    )
    image_px: int = Field(224, ge=32, le=1024, description="Side of the base image.")
    min_base_px: int = Field(
        64, ge=16, description="Base images smaller than this (shorter side) are refused."
    )
    blur_sigma: float = Field(
        4.0, gt=0, description="Gaussian blur (pixels) of the `natural_blurred` references."
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Occlusions per forward pass.")
    references_title: str = "Favorite Images"
    base_title: str = "Another Favorite Image"
    practice_explanation: str = Field(
        "The image shown in green is more favored: its grey square hides less of what the unit "
        "responds to (look at the Favorite Images for what that is), so the unit's response "
        "stays higher.",
        max_length=600,
        description="Shown with the practice feedback, beside the right image turning green "
        "(the original's practice screens); empty for none.",
    )

    @model_validator(mode="after")
    def _grid_fits(self) -> OcclusionSection:
        if self.image_px < self.min_base_px:
            raise ValueError(
                f"image_px ({self.image_px}) is smaller than min_base_px ({self.min_base_px})"
            )
        patch = round(self.patch_fraction * self.image_px)
        stride = max(1, round(self.stride_px * self.image_px / 224))
        if stride > self.image_px - patch:
            raise ValueError(
                f"stride_px {self.stride_px} leaves one patch position on a {self.image_px} px "
                f"image with a {patch} px patch: lower stride_px (at most "
                f"{(self.image_px - patch) * 224 // self.image_px})"
            )
        return self


class OcclusionParadigm(Paradigm):
    name = "occlusion"
    trial_type = "occlusion"
    section = OcclusionSection
    conditions = ("none", "natural", "synthetic", "mixed", "natural_blurred")
    # What a reanalysis needs per response: the ground truth's activations, where the patch
    # was (pixels of the `image_px` image; no max position on obvious trials, whose "max"
    # is the unoccluded base) and which base image was occluded.
    export_columns: ClassVar[dict[str, str]] = {
        "base_image": "string",
        "obvious": "bool",
        "activation_base": "float",
        "activation_max": "float",
        "activation_min": "float",
        "activation_diff": "float",
        "patch_fraction": "float",
        "patch_px": "int",
        "occlusion_max_top": "int",
        "occlusion_max_left": "int",
        "occlusion_min_top": "int",
        "occlusion_min_left": "int",
    }

    def generate(self, db: Session, settings: Settings, config: StudyConfig, progress=None):
        from server.paradigms.occlusion_trials import generate

        return generate(db, settings, config, progress)

    def build_trials(
        self, db: Session, config: StudyConfig, study_id: int, stimulus_set_id: str
    ) -> list[Trial]:
        from server.paradigms.occlusion_trials import build_occlusion_trials

        return build_occlusion_trials(db, config, study_id, stimulus_set_id)

    def export_values(self, images: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
        return {**super().export_values(images, details), "base_image": images.get("base")}

    def analysis_extras(self, frame: pd.DataFrame) -> dict[str, Any]:
        from analysis.occlusion import tables

        return {name: table.to_dict("records") for name, table in tables(frame).items()}
