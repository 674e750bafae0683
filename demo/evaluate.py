"""Match detections to true boxes: the precision and recall figures the README quotes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Tally:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, other: Tally) -> None:
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0


def match(detections: list[dict], truth: list[dict], min_iou: float = 0.5) -> Tally:
    """Greedy, highest score first: a detection is right when it overlaps an unmatched true box
    of the same class by more than `min_iou`."""
    tally = Tally()
    unmatched = list(range(len(truth)))
    for det in sorted(detections, key=lambda d: -d["score"]):
        best, best_iou = None, min_iou
        for k in unmatched:
            overlap = iou(det["box"], truth[k]["box"])
            if truth[k]["class_id"] == det["class_id"] and overlap > best_iou:
                best, best_iou = k, overlap
        if best is None:
            tally.false_positives += 1
        else:
            unmatched.remove(best)
            tally.true_positives += 1
    tally.false_negatives = len(unmatched)
    return tally
