"""Problem types: what is predicted per sequence or per residue, and everything that follows from it
(label parsing, targets, loss, scores, metrics, units, prediction tables, plots)."""

from plmforge.tasks.base import PROBLEM_TYPES, ProblemType, TaskSpec, register_problem_type
from plmforge.tasks.kinds import IGNORE, LabelSummary, is_missing
from plmforge.tasks.scaling import LabelScaler

# isort: off
from plmforge.tasks import sequence as _sequence  # noqa: F401  (registers the sequence problem types, then
from plmforge.tasks import residue as _residue  # noqa: F401  the residue ones: the order users see them in)
# isort: on

__all__ = ["IGNORE", "PROBLEM_TYPES", "LabelScaler", "LabelSummary", "ProblemType", "TaskSpec", "is_missing",
           "register_problem_type"]
