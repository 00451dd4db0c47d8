"""Score texts with an exported model.

scorer.py: the Scorer (length-bucketed, order-restoring batches through ONNX Runtime).
columns.py: the output columns of `xlc score` and `xlc.score` (predictions, empty texts, kept columns).
job.py: a score job and what both engines share (input checks, scored chunks, fingerprint, resume).
local.py: `xlc score` on this machine. ray.py: `--engine ray` (imports Ray only when it runs).
"""

from xlc.scoring.job import (
    ScoreJob,
    ScoreSummary,
    check_resumable,
    exact_chunks,
    input_files,
    lock_file,
    output_schema,
    score_chunk,
)
from xlc.scoring.local import score_file
from xlc.scoring.scorer import ProgressFn, Scorer, predictions, softmax

__all__ = ["ProgressFn", "ScoreJob", "ScoreSummary", "Scorer", "check_resumable", "exact_chunks", "input_files",
           "lock_file", "output_schema", "predictions", "score_chunk", "score_file", "softmax"]
