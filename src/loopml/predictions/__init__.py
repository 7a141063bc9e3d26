"""The prediction log: Parquet segments of every served or batch-scored prediction, indexed in the metadata
store, and the true labels (feedback) that arrive later. Serving and batch scoring write it; monitoring reads it.

    PredictionLog ── append(PredictionBatch) ──► bounded queue ──► writer thread
                                                                   │ one open segment per (model, version,
                                                                   ▼ route, source), closed by rows or age
                       blob store: one Parquet file per Segment ◄──┴──► prediction_segments: one row each
    segments() / read_predictions()      read them back (monitoring, tests)
    record_feedback() / labels_for()     true labels by prediction id; predictions_with_labels() joins them
    prune()                              retention: drops old segment rows; `loopml gc` removes their files
"""

from loopml.predictions.feedback import labels_for, predictions_with_labels, record_feedback
from loopml.predictions.log import PredictionLog
from loopml.predictions.records import PredictionBatch, Segment
from loopml.predictions.retention import Pruned, prune
from loopml.predictions.segments import read_predictions, segments

__all__ = [
    "PredictionBatch",
    "PredictionLog",
    "Pruned",
    "Segment",
    "labels_for",
    "predictions_with_labels",
    "prune",
    "read_predictions",
    "record_feedback",
    "segments",
]
