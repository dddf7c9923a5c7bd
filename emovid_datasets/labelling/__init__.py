"""The human-machine labelling loop: vote aggregation, agreement statistics, clip features, labellers,
captioners and simulated annotators (the `emovid-build annotate`/`caption`/`splits` stages use them)."""

from .agreement import agreement_report, cohen_kappa, count_table, fleiss_kappa, format_agreement_table
from .captioner import Captioner, FactualCaptioner, VLMCaptioner
from .features import FEATURE_NAMES, clip_features
from .labeller import FeatureClassifier, Labeller, Prediction, VLMLabeller, parse_emotion
from .simulate import simulate_votes
from .vlm import TransformersVLM
from .votes import VoteResult, aggregate_votes, group_votes, normalise_vote, read_vote_file, write_vote_file

__all__ = [
    "Captioner", "FEATURE_NAMES", "FactualCaptioner", "FeatureClassifier", "Labeller", "Prediction", "TransformersVLM",
    "VLMCaptioner", "VLMLabeller", "VoteResult", "agreement_report", "aggregate_votes", "clip_features", "cohen_kappa", "count_table",
    "fleiss_kappa", "format_agreement_table", "group_votes", "normalise_vote", "parse_emotion", "read_vote_file",
    "simulate_votes", "write_vote_file",
]
